//! [`PartitionProducer`]: a producer on one topic or partition: its registration on the broker
//! (`CreateProducer`), re-made when the broker answers `CLOSE` or the retry budget of a send is
//! spent, and `SendMessage`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use courier_impls::grpc::proto::danube::health_check_request::ClientType;
use courier_impls::grpc::proto::danube::producer_service_client::ProducerServiceClient;
use courier_impls::grpc::proto::danube::{
    DispatchStrategy, MsgId, ProducerAccessMode, ProducerRequest, SchemaReference, StreamMessage,
};
use courier_traits::error::Classify;

use super::core::ClientCore;
use super::error::BrokerError;
use super::health::{self, Attachment, AttachmentSlot};
use super::tasks::OwnedTasks;

/// What one send carries.
#[derive(Clone, Debug)]
pub(crate) struct Outgoing {
    pub(crate) payload: Bytes,
    pub(crate) key: Option<String>,
    pub(crate) attributes: HashMap<String, String>,
}

/// How a producer registers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProducerMode {
    pub(crate) dispatch: DispatchStrategy,
    pub(crate) access: ProducerAccessMode,
}

/// A producer on one topic (a partition of a partitioned one, or the topic itself).
#[derive(Debug)]
pub(crate) struct PartitionProducer {
    core: Arc<ClientCore>,
    topic: String,
    name: String,
    mode: ProducerMode,
    request_ids: AtomicU64,
    attachment: AttachmentSlot,
    /// The schema reference sent at create and the (schema id, version) it resolved to,
    /// stamped on every message.
    schema: Option<(SchemaReference, (u64, u32))>,
}

impl PartitionProducer {
    pub(crate) fn new(
        core: Arc<ClientCore>,
        topic: String,
        name: String,
        mode: ProducerMode,
    ) -> PartitionProducer {
        PartitionProducer {
            core,
            topic,
            name,
            mode,
            request_ids: AtomicU64::new(0),
            attachment: AttachmentSlot::default(),
            schema: None,
        }
    }

    /// Declares the schema reference and what it resolved to.
    pub(crate) fn with_schema(
        mut self,
        schema: Option<(SchemaReference, (u64, u32))>,
    ) -> PartitionProducer {
        self.schema = schema;
        self
    }

    /// The registration in use, if any (valid or not).
    fn current(&self) -> Option<Attachment> {
        self.attachment.current()
    }

    /// The producer id the broker gave, if registered.
    pub(crate) fn producer_id(&self) -> Option<u64> {
        self.current().map(|a| a.id)
    }

    /// Registers under the retry policy (re-looking up the topic before each attempt).
    pub(crate) async fn create(&self, tasks: &OwnedTasks) -> Result<Attachment, BrokerError> {
        self.core
            .retrying(tasks.token(), |_| self.attach_once(tasks))
            .await
    }

    /// One registration attempt: locate the topic's broker, `CreateProducer` there, replace
    /// the previous registration and start its health checks.
    async fn attach_once(&self, tasks: &OwnedTasks) -> Result<Attachment, BrokerError> {
        let core = &self.core;
        let known = self.attachment.url_or(&core.service_url);
        let url = core.locate(&self.topic, &known).await;
        let call = core.call(&url);
        let mut client =
            ProducerServiceClient::new(core.channel(&url, "CreateProducer", &self.topic)?);
        let request = core
            .request(
                &call,
                ProducerRequest {
                    request_id: self.request_ids.fetch_add(1, Ordering::Relaxed),
                    producer_name: self.name.clone(),
                    topic_name: self.topic.clone(),
                    schema_ref: self.schema.as_ref().map(|(reference, _)| reference.clone()),
                    producer_access_mode: self.mode.access.into(),
                    dispatch_strategy: self.mode.dispatch.into(),
                },
            )
            .await
            .map_err(|e| BrokerError::rpc("CreateProducer", &self.topic, e))?;
        let answer = call
            .unary(client.create_producer(request))
            .await
            .map_err(|e| BrokerError::rpc("CreateProducer", &self.topic, e))?;
        let attachment = Attachment {
            id: answer.producer_id,
            url,
            valid: tasks.token().child_token(),
        };
        self.attachment.replace(attachment.clone());
        tasks.spawn(health::watch(
            core.clone(),
            ClientType::Producer,
            attachment.clone(),
        ));
        Ok(attachment)
    }

    /// Sends `message` and returns its sequence id (the `request_id` the broker echoes).
    ///
    /// Transient failures are retried under the policy, re-looking up the topic between
    /// attempts (a new owner re-attaches the producer id). When the budget is spent the
    /// producer registers anew and the send gets one more round.
    pub(crate) async fn send(
        &self,
        tasks: &OwnedTasks,
        message: &Outgoing,
    ) -> Result<u64, BrokerError> {
        match self.send_round(tasks, message).await {
            Err(error) if error.is_retryable() => {
                tracing::warn!(topic = %self.topic, %error, "send retries spent: registering the producer again");
                if let Some(stale) = self.current() {
                    stale.valid.cancel();
                }
                self.send_round(tasks, message).await
            }
            outcome => outcome,
        }
    }

    async fn send_round(&self, tasks: &OwnedTasks, message: &Outgoing) -> Result<u64, BrokerError> {
        self.core
            .retrying(tasks.token(), |attempt| async move {
                let attachment = match self.current() {
                    Some(attachment) if attachment.is_valid() => attachment,
                    // Never registered, or the broker answered CLOSE: register (again).
                    _ => self.attach_once(tasks).await?,
                };
                let url = if attempt > 1 {
                    self.core.locate(&self.topic, &attachment.url).await
                } else {
                    attachment.url.clone()
                };
                self.send_once(&attachment, &url, message).await
            })
            .await
    }

    async fn send_once(
        &self,
        attachment: &Attachment,
        url: &str,
        message: &Outgoing,
    ) -> Result<u64, BrokerError> {
        let core = &self.core;
        let call = core.call(url);
        let mut client =
            ProducerServiceClient::new(core.channel(url, "SendMessage", &self.topic)?);
        let publish_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let request = core
            .request(
                &call,
                StreamMessage {
                    request_id: self.request_ids.fetch_add(1, Ordering::Relaxed),
                    msg_id: Some(MsgId {
                        producer_id: attachment.id,
                        topic_name: self.topic.clone(),
                        broker_addr: url.to_owned(),
                        // The broker assigns offsets (spec §1 rule 2).
                        topic_offset: 0,
                    }),
                    payload: message.payload.clone(),
                    publish_time,
                    producer_name: self.name.clone(),
                    subscription_name: String::new(),
                    attributes: message.attributes.clone(),
                    schema_id: self.schema.as_ref().map(|(_, (id, _))| *id),
                    schema_version: self.schema.as_ref().map(|(_, (_, version))| *version),
                    routing_key: message.key.clone(),
                },
            )
            .await
            .map_err(|e| BrokerError::rpc("SendMessage", &self.topic, e))?;
        let answer = call
            .unary(client.send_message(request))
            .await
            .map_err(|e| BrokerError::rpc("SendMessage", &self.topic, e))?;
        Ok(answer.request_id)
    }
}
