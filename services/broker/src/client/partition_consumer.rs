//! [`PartitionConsumer`]: a consumer's registration on one topic or partition (`Subscribe`),
//! and the acks and nacks of the messages it delivered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use courier_impls::grpc::proto::courier_broker::AckManyRequest;
use courier_impls::grpc::proto::courier_broker::ack_batch_service_client::AckBatchServiceClient;
use courier_impls::grpc::proto::danube::consumer_request::SubscriptionType;
use courier_impls::grpc::proto::danube::consumer_service_client::ConsumerServiceClient;
use courier_impls::grpc::proto::danube::{AckRequest, ConsumerRequest, MsgId, NackRequest};
use tokio_util::sync::CancellationToken;

use super::ack_queue::AckQueue;
use super::core::ClientCore;
use super::error::BrokerError;
use super::health::{Attachment, AttachmentSlot};
use super::tasks::OwnedTasks;

/// What a consumer subscribes with, the same on every partition.
#[derive(Clone, Debug)]
pub(crate) struct SubscriptionSpec {
    pub(crate) consumer_name: String,
    pub(crate) subscription: String,
    pub(crate) kind: SubscriptionType,
    pub(crate) key_filters: Vec<String>,
}

/// A consumer on one topic (a partition, or the topic itself).
#[derive(Debug)]
pub(crate) struct PartitionConsumer {
    pub(crate) core: Arc<ClientCore>,
    pub(crate) topic: String,
    spec: Arc<SubscriptionSpec>,
    request_ids: AtomicU64,
    attachment: AttachmentSlot,
    /// The consumer's own token: cancelled by `close()`.
    cancel: CancellationToken,
    /// Where acks wait for the partition's ack task ([`super::acks`]).
    acks: AckQueue,
    /// The consumer's tasks, where the ack task runs (not kept alive by a message: the
    /// consumer owns them).
    tasks: Weak<OwnedTasks>,
}

impl PartitionConsumer {
    /// A partition of the consumer whose tasks are `tasks` (`cancel` is their token).
    pub(crate) fn new(
        core: Arc<ClientCore>,
        topic: String,
        spec: Arc<SubscriptionSpec>,
        tasks: &Arc<OwnedTasks>,
    ) -> PartitionConsumer {
        PartitionConsumer {
            core,
            topic,
            spec,
            request_ids: AtomicU64::new(0),
            attachment: AttachmentSlot::default(),
            cancel: tasks.token().clone(),
            acks: AckQueue::default(),
            tasks: Arc::downgrade(tasks),
        }
    }

    pub(crate) fn acks(&self) -> &AckQueue {
        &self.acks
    }

    pub(crate) fn next_request_id(&self) -> u64 {
        self.request_ids.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The registration in use, if any (valid or not).
    pub(crate) fn current(&self) -> Option<Attachment> {
        self.attachment.current()
    }

    /// Subscribes under the retry policy, re-looking up the topic before each attempt.
    pub(crate) async fn subscribe(&self) -> Result<Attachment, BrokerError> {
        self.core
            .retrying(&self.cancel, |_| self.subscribe_once())
            .await
    }

    async fn subscribe_once(&self) -> Result<Attachment, BrokerError> {
        let core = &self.core;
        let known = self.attachment.url_or(&core.service_url);
        let url = core.locate(&self.topic, &known).await;
        let call = core.call(&url);
        let mut client =
            ConsumerServiceClient::new(core.channel(&url, "Subscribe", &self.topic)?);
        let request = core
            .request(
                &call,
                ConsumerRequest {
                    request_id: self.next_request_id(),
                    topic_name: self.topic.clone(),
                    consumer_name: self.spec.consumer_name.clone(),
                    subscription: self.spec.subscription.clone(),
                    subscription_type: self.spec.kind.into(),
                    key_filters: self.spec.key_filters.clone(),
                },
            )
            .await
            .map_err(|e| BrokerError::rpc("Subscribe", &self.topic, e))?;
        let answer = call
            .unary(client.subscribe(request))
            .await
            .map_err(|e| BrokerError::rpc("Subscribe", &self.topic, e))?;
        let attachment = Attachment {
            id: answer.consumer_id,
            url,
            valid: self.cancel.child_token(),
        };
        self.attachment.replace(attachment.clone());
        // A new attachment may be another node, which may serve `AckMany`.
        self.acks.rebatch();
        Ok(attachment)
    }

    /// The consumer's tasks, while the consumer lives.
    pub(crate) fn tasks(&self) -> Option<Arc<OwnedTasks>> {
        self.tasks.upgrade()
    }

    /// Acks `offsets` of this partition in one `AckMany` call (idempotent on the broker, so
    /// retried).
    pub(crate) async fn ack_many(&self, offsets: &[u64]) -> Result<(), BrokerError> {
        self.core
            .retrying(&self.cancel, |_| async {
                let url = self.ack_url();
                let call = self.core.call(&url);
                let mut client =
                    AckBatchServiceClient::new(self.core.channel(&url, "AckMany", &self.topic)?);
                let request = self
                    .core
                    .request(
                        &call,
                        AckManyRequest {
                            request_id: self.next_request_id(),
                            topic_name: self.topic.clone(),
                            subscription_name: self.spec.subscription.clone(),
                            topic_offsets: offsets.to_vec(),
                        },
                    )
                    .await
                    .map_err(|e| BrokerError::rpc("AckMany", &self.topic, e))?;
                call.unary(client.ack_many(request))
                    .await
                    .map(drop)
                    .map_err(|e| BrokerError::rpc("AckMany", &self.topic, e))
            })
            .await
    }

    /// Acks the message `msg_id` with Danube's `Ack` (idempotent on the broker, so retried).
    pub(crate) async fn ack_one(&self, msg_id: &MsgId) -> Result<(), BrokerError> {
        self.core
            .retrying(&self.cancel, |_| async {
                let url = self.ack_url();
                let call = self.core.call(&url);
                let mut client =
                    ConsumerServiceClient::new(self.core.channel(&url, "Ack", &self.topic)?);
                let request = self
                    .core
                    .request(
                        &call,
                        AckRequest {
                            request_id: self.next_request_id(),
                            msg_id: Some(msg_id.clone()),
                            subscription_name: self.spec.subscription.clone(),
                        },
                    )
                    .await
                    .map_err(|e| BrokerError::rpc("Ack", &self.topic, e))?;
                call.unary(client.ack(request))
                    .await
                    .map(drop)
                    .map_err(|e| BrokerError::rpc("Ack", &self.topic, e))
            })
            .await
    }

    /// Nacks the message `msg_id`: the broker redelivers it after `delay` (its own default
    /// when `None`).
    pub(crate) async fn nack(
        &self,
        msg_id: &MsgId,
        delay: Option<Duration>,
        reason: Option<&str>,
    ) -> Result<(), BrokerError> {
        self.core
            .retrying(&self.cancel, |_| async {
                let url = self.ack_url();
                let call = self.core.call(&url);
                let mut client =
                    ConsumerServiceClient::new(self.core.channel(&url, "Nack", &self.topic)?);
                let request = self
                    .core
                    .request(
                        &call,
                        NackRequest {
                            request_id: self.next_request_id(),
                            msg_id: Some(msg_id.clone()),
                            subscription_name: self.spec.subscription.clone(),
                            delay_ms: delay.map(|d| d.as_millis().min(u128::from(u64::MAX)) as u64),
                            reason: reason.map(str::to_owned),
                        },
                    )
                    .await
                    .map_err(|e| BrokerError::rpc("Nack", &self.topic, e))?;
                call.unary(client.nack(request))
                    .await
                    .map(drop)
                    .map_err(|e| BrokerError::rpc("Nack", &self.topic, e))
            })
            .await
    }

    /// Acks go to the broker the consumer is attached to.
    fn ack_url(&self) -> String {
        self.attachment.url_or(&self.core.service_url)
    }
}
