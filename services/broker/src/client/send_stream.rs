//! [`SendStream`]: a producer's sends on Courier's `ProduceStreamService/SendMessages`, one
//! bidirectional HTTP/2 stream per producer registration: each send is one message out and one
//! `SendOutcome` back, matched by `request_id`, instead of a new HTTP/2 stream per message
//! (Danube's unary `SendMessage`).
//!
//! A task of the producer ([`OwnedTasks`]) reads the answers and hands each to its send. When
//! the stream ends or breaks, every send still waiting fails with a retryable
//! [`GrpcError::Broken`]: the producer's retry loop sends it again (same producer, same
//! request id) on a new stream. A message the broker stored but whose answer was lost is then
//! stored again: at least once, as `SendMessage` retries are. Dropping the last handle ends the
//! client's side; the broker answers what it read, ends the stream, and the task ends with it
//! (or when the producer closes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use courier_impls::grpc::proto::courier_broker::SendOutcome;
use courier_impls::grpc::proto::courier_broker::produce_stream_service_client::ProduceStreamServiceClient;
use courier_impls::grpc::proto::danube::StreamMessage;
use courier_impls::grpc::{GrpcError, GrpcStream};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

use super::core::ClientCore;
use super::error::BrokerError;
use super::tasks::OwnedTasks;

/// Messages queued for the stream before a send waits for room (HTTP/2 flow control holds
/// the rest).
const OUTBOUND_CAPACITY: usize = 256;

/// The RPC named in errors about the stream itself (its opening); a message's own answer is
/// reported as its `SendMessage` would be.
const OPERATION: &str = "SendMessages";

/// A send's answer: the echoed `request_id`, the status the broker answered, or `None` when
/// the stream ended first.
type Answer = oneshot::Sender<Result<u64, Option<Status>>>;

/// The sends waiting for their answers, shared with the task reading them.
#[derive(Debug, Default)]
struct Waiting {
    sends: Mutex<HashMap<u64, Answer>>,
    /// Cancelled once the stream ended: nothing more will be answered.
    ended: CancellationToken,
}

impl Waiting {
    fn sends(&self) -> MutexGuard<'_, HashMap<u64, Answer>> {
        self.sends.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The stream ended (`why`): every send still waiting fails, retryably.
    fn end(&self, why: &'static str) {
        self.ended.cancel();
        let left = std::mem::take(&mut *self.sends());
        if !left.is_empty() {
            tracing::debug!(
                sends = left.len(),
                why,
                "send stream ended with sends unanswered"
            );
        }
        for (_, answer) in left {
            let _ = answer.send(Err(None));
        }
    }
}

/// A broken stream, as a broken unary call is reported: retryable, no status from the server.
fn broken(why: &str) -> GrpcError {
    GrpcError::Broken {
        message: format!("send stream: {why}"),
        source: None,
    }
}

/// One open `SendMessages` stream of a producer registration.
#[derive(Debug)]
pub(crate) struct SendStream {
    /// The broker URL and producer id it was opened for.
    url: String,
    producer_id: u64,
    outbound: mpsc::Sender<StreamMessage>,
    waiting: Arc<Waiting>,
}

impl SendStream {
    /// Opens the stream to `url` for producer `producer_id` of `topic`; its reader runs
    /// among `tasks`.
    ///
    /// Errors: the call's ([`BrokerError::Rpc`]; `Unimplemented` from a broker without it),
    /// [`BrokerError::Closed`] once the producer is closed.
    pub(crate) async fn open(
        core: &ClientCore,
        tasks: &OwnedTasks,
        url: &str,
        producer_id: u64,
        topic: &str,
    ) -> Result<SendStream, BrokerError> {
        if tasks.token().is_cancelled() {
            return Err(BrokerError::Closed);
        }
        let rpc = |e| BrokerError::rpc(OPERATION, topic, e);
        let (outbound, mut queued) = mpsc::channel(OUTBOUND_CAPACITY);
        let call = core.streaming_call(url);
        let mut client = ProduceStreamServiceClient::new(core.channel(url, OPERATION, topic)?);
        let body = futures::stream::poll_fn(move |cx| queued.poll_recv(cx));
        let request = core.request(&call, body).await.map_err(rpc)?;
        // The stream has no deadline (it stays open), but its opening has the unary calls' own:
        // a node that stopped answering fails the attempt instead of holding it.
        let answers = tokio::time::timeout(
            core.call_timeout,
            call.server_streaming(client.send_messages(request)),
        )
        .await
        .unwrap_or(Err(GrpcError::Timeout(core.call_timeout)))
        .map_err(rpc)?;
        let waiting = Arc::new(Waiting::default());
        tasks.spawn(read(waiting.clone(), answers, tasks.token().clone()));
        Ok(SendStream {
            url: url.to_owned(),
            producer_id,
            outbound,
            waiting,
        })
    }

    /// Whether sends of producer `producer_id` to `url` may go on this stream.
    pub(crate) fn serves(&self, producer_id: u64, url: &str) -> bool {
        self.producer_id == producer_id && self.url == url && !self.waiting.ended.is_cancelled()
    }

    /// Sends `message` and waits for its answer, all within `timeout` (a stream stalled with
    /// its queue full included): the `request_id` the broker echoes, or the status it answered
    /// (as a `SendMessage` call's error), or [`GrpcError::Broken`] if the stream ended first.
    pub(crate) async fn send(
        &self,
        message: StreamMessage,
        timeout: Duration,
    ) -> Result<u64, GrpcError> {
        let request_id = message.request_id;
        let (answer, answered) = oneshot::channel();
        // Waiting before it is sent: its answer may come back before `send` returns.
        self.waiting.sends().insert(request_id, answer);
        let exchange = async {
            if self.waiting.ended.is_cancelled() || self.outbound.send(message).await.is_err() {
                return Err(broken("it ended before the message was sent"));
            }
            match answered.await {
                Ok(Ok(request_id)) => Ok(request_id),
                // Mapped as the unary call's status would be (same URL, same deadline).
                Ok(Err(Some(status))) => {
                    Err(GrpcError::from_status(status, &self.url, Some(timeout)))
                }
                Ok(Err(None)) | Err(_) => Err(broken("it ended before the answer came")),
            }
        };
        let outcome = tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(GrpcError::Timeout(timeout)));
        if outcome.is_err() {
            self.waiting.sends().remove(&request_id);
        }
        outcome
    }
}

/// Ends the stream's waiting sends however the reader stops (stream ended, broke, producer
/// closed, task aborted).
struct EndOnDrop(Arc<Waiting>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.end("the stream ended");
    }
}

/// The reader: hands each answer to its send until the stream ends or `cancel` fires.
async fn read(
    waiting: Arc<Waiting>,
    mut answers: GrpcStream<SendOutcome>,
    cancel: CancellationToken,
) {
    let _end = EndOnDrop(waiting.clone());
    loop {
        let next = tokio::select! {
            () = cancel.cancelled() => return,
            next = answers.next() => next,
        };
        match next {
            Some(Ok(outcome)) => answer(&waiting, outcome),
            Some(Err(error)) => {
                tracing::debug!(%error, "send stream ended with an error");
                return;
            }
            None => return,
        }
    }
}

/// Hands `outcome` to the send waiting for it (none if it gave up waiting).
fn answer(waiting: &Waiting, outcome: SendOutcome) {
    let Some(answer) = waiting.sends().remove(&outcome.request_id) else {
        return;
    };
    let result = match Code::from(i32::try_from(outcome.code).unwrap_or(i32::MAX)) {
        Code::Ok => Ok(outcome.request_id),
        code => Err(Some(Status::new(code, outcome.message))),
    };
    let _ = answer.send(result);
}
