//! The task behind each partition of a consumer: keeps a subscription, a `ReceiveMessages`
//! stream and its health checks going, and forwards deliveries (and errors) into the
//! consumer's bounded channel.
//!
//! - The stream ends or breaks: reopened with the same consumer id, backing off under the
//!   retry policy; when the policy gives up, the partition subscribes again.
//! - The broker answers a health check with `CLOSE`: subscribes again at once.
//! - A permanent error (the broker refuses the subscription, or the stream): one `Err` item,
//!   then this partition's task ends. Transient errors the policy gave up on are items too,
//!   and the task keeps trying.
//! - The consumer closes (or is dropped): the task ends.

use std::sync::Arc;
use std::time::Duration;

use courier_impls::grpc::proto::danube::ReceiveRequest;
use courier_impls::grpc::proto::danube::StreamMessage;
use courier_impls::grpc::proto::danube::consumer_service_client::ConsumerServiceClient;
use courier_impls::grpc::proto::danube::health_check_request::ClientType;
use courier_impls::grpc::{GrpcError, GrpcStream};
use courier_traits::error::{Classify, ErrorClass};
use courier_traits::retry::{RetryContext, RetryDecision};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::error::{BrokerError, rpc_class};
use super::health::{self, Attachment};
use super::message::{Message, Partitions};
use super::partition_consumer::PartitionConsumer;

/// Where a partition's deliveries go.
pub(crate) type Deliveries = mpsc::Sender<Result<Message, BrokerError>>;

/// How one open stream ended.
enum Pumped {
    /// The consumer closed, or nobody reads its deliveries any more.
    Stop,
    /// The broker answered `CLOSE`: subscribe again.
    BrokerClosed,
    /// The stream ended or failed: reopen it (or subscribe again).
    Ended(Option<GrpcError>),
}

/// Runs partition `partition` of a consumer until it closes or fails permanently.
pub(crate) async fn run(
    partition: Arc<PartitionConsumer>,
    partitions: Arc<Partitions>,
    deliveries: Deliveries,
) {
    let mut failures = Failures::default();
    loop {
        let attachment = match partition.current() {
            Some(attachment) if attachment.is_valid() => attachment,
            _ => match partition.subscribe().await {
                Ok(attachment) => attachment,
                Err(BrokerError::Closed) => return,
                Err(error) => {
                    let permanent = !error.is_retryable();
                    tracing::warn!(topic = %partition.topic, %error, "subscribing failed");
                    if !forward(&partition, &deliveries, Err(error)).await || permanent {
                        return;
                    }
                    continue;
                }
            },
        };
        match pump(
            &partition,
            &partitions,
            &attachment,
            &deliveries,
            &mut failures,
        )
        .await
        {
            Pumped::Stop => return,
            Pumped::BrokerClosed => failures = Failures::default(),
            Pumped::Ended(error) => {
                let class = error.as_ref().map_or(ErrorClass::TRANSIENT, rpc_class);
                if !class.is_retryable() {
                    if let Some(error) = error {
                        let error = BrokerError::rpc("ReceiveMessages", &partition.topic, error);
                        forward(&partition, &deliveries, Err(error)).await;
                    }
                    return;
                }
                match failures.next_delay(&partition, class) {
                    Some(delay) => {
                        tokio::select! {
                            _ = partition.cancel_token().cancelled() => return,
                            _ = tokio::time::sleep(delay) => {}
                        }
                    }
                    None => {
                        tracing::warn!(topic = %partition.topic, "receive retries spent: subscribing again");
                        attachment.valid.cancel();
                        failures = Failures::default();
                    }
                }
            }
        }
    }
}

/// Opens `ReceiveMessages` for `attachment` and forwards its messages, health-checking the
/// attachment meanwhile.
async fn pump(
    partition: &PartitionConsumer,
    partitions: &Arc<Partitions>,
    attachment: &Attachment,
    deliveries: &Deliveries,
    failures: &mut Failures,
) -> Pumped {
    let cancel = partition.cancel_token();
    let health = health::watch(
        partition.core.clone(),
        ClientType::Consumer,
        attachment.clone(),
    );
    tokio::pin!(health);
    let mut health_running = true;
    let mut stream = tokio::select! {
        biased;
        _ = cancel.cancelled() => return Pumped::Stop,
        _ = attachment.valid.cancelled() => return Pumped::BrokerClosed,
        opened = open(partition, attachment) => match opened {
            Ok(stream) => stream,
            Err(error) => return Pumped::Ended(Some(error)),
        },
    };
    failures.reset();
    // Made once, not per message: each `cancelled()` future registers with the token when
    // polled, a lock taken and released for every delivery otherwise.
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    loop {
        let next = tokio::select! {
            biased;
            _ = &mut cancelled => return Pumped::Stop,
            _ = &mut health, if health_running => {
                // The watch ends on CLOSE (the attachment is then invalid) or when the broker
                // does not serve health checks (keep receiving without them).
                health_running = false;
                if attachment.is_valid() {
                    continue;
                }
                return Pumped::BrokerClosed;
            }
            next = stream.next() => next,
        };
        let delivery = match next {
            Some(Ok(message)) => Message::new(message, partitions.clone()),
            Some(Err(error)) => return Pumped::Ended(Some(error)),
            None => return Pumped::Ended(None),
        };
        if !forward(partition, deliveries, delivery).await {
            return Pumped::Stop;
        }
    }
}

async fn open(
    partition: &PartitionConsumer,
    attachment: &Attachment,
) -> Result<GrpcStream<StreamMessage>, GrpcError> {
    let core = &partition.core;
    let call = core.streaming_call(&attachment.url);
    let mut client = ConsumerServiceClient::new(core.channels.channel(&attachment.url)?);
    let request = core
        .request(
            &call,
            ReceiveRequest {
                request_id: partition.next_request_id(),
                consumer_id: attachment.id,
            },
        )
        .await?;
    call.server_streaming(client.receive_messages(request))
        .await
}

/// Puts `item` in the consumer's channel, waiting for room (the channel is bounded). False
/// when the consumer closed or its receiver is gone.
async fn forward(
    partition: &PartitionConsumer,
    deliveries: &Deliveries,
    item: Result<Message, BrokerError>,
) -> bool {
    if partition.cancel_token().is_cancelled() {
        return false;
    }
    // The usual case, the channel has room: no need to watch the token meanwhile.
    let item = match deliveries.try_send(item) {
        Ok(()) => return true,
        Err(mpsc::error::TrySendError::Closed(_)) => return false,
        Err(mpsc::error::TrySendError::Full(item)) => item,
    };
    tokio::select! {
        biased;
        _ = partition.cancel_token().cancelled() => false,
        sent = deliveries.send(item) => sent.is_ok(),
    }
}

/// Consecutive failures to keep a stream open, judged by the retry policy. A stream that
/// simply ended counts as a transient failure.
#[derive(Default)]
struct Failures {
    count: u32,
    since: Option<Instant>,
    previous_delay: Option<Duration>,
}

impl Failures {
    fn reset(&mut self) {
        *self = Failures::default();
    }

    /// The delay before reopening after one more failure, or `None` when the policy gives
    /// up.
    fn next_delay(&mut self, partition: &PartitionConsumer, class: ErrorClass) -> Option<Duration> {
        self.count = self.count.saturating_add(1);
        let since = *self.since.get_or_insert_with(Instant::now);
        let context = RetryContext {
            attempt: self.count,
            elapsed: since.elapsed(),
            previous_delay: self.previous_delay,
            class,
        };
        match partition.core.policy.decide(&context) {
            RetryDecision::RetryAfter(delay) => {
                self.previous_delay = Some(delay);
                Some(delay)
            }
            RetryDecision::GiveUp(_) => None,
        }
    }
}
