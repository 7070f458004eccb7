//! [`PartitionProducer`]: a producer on one topic or partition: its registration on the broker
//! (`CreateProducer`), re-made when the broker answers `CLOSE` or the retry budget of a send is
//! spent, and its sends: on Courier's send stream ([`super::send_stream`]) where the broker
//! serves it, else (a Danube broker: `Unimplemented`) Danube's `SendMessage` per message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use courier_impls::grpc::proto::danube::health_check_request::ClientType;
use courier_impls::grpc::proto::danube::producer_service_client::ProducerServiceClient;
use courier_impls::grpc::proto::danube::{
    DispatchStrategy, MsgId, ProducerAccessMode, ProducerRequest, SchemaReference, StreamMessage,
};
use courier_traits::error::Classify;
use tonic::Code;

use super::core::ClientCore;
use super::error::BrokerError;
use super::health::{self, Attachment, AttachmentSlot};
use super::send_stream::{SendStream, SendStreams};
use super::tasks::OwnedTasks;

/// Payloads above this go by `SendMessage` even on a broker serving the send stream: a large
/// message on the producer's one stream would hold the small ones behind it.
const MAX_STREAMED_PAYLOAD: usize = 64 << 10;

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
    /// The client's send streams, one per broker, shared by its producers.
    streams: Arc<SendStreams>,
    /// The send stream in use, if one is open (holding it keeps it open).
    stream: Mutex<Option<Arc<SendStream>>>,
    /// Whether the broker is believed to serve the send stream (until it answers
    /// `Unimplemented`; again after each registration, perhaps on another node).
    streaming: AtomicBool,
}

impl PartitionProducer {
    pub(crate) fn new(
        core: Arc<ClientCore>,
        streams: Arc<SendStreams>,
        topic: String,
        name: String,
        mode: ProducerMode,
    ) -> PartitionProducer {
        PartitionProducer {
            core,
            streams,
            topic,
            name,
            mode,
            request_ids: AtomicU64::new(0),
            attachment: AttachmentSlot::default(),
            schema: None,
            stream: Mutex::new(None),
            streaming: AtomicBool::new(true),
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
        self.streaming.store(true, Ordering::Relaxed);
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
        // On the send stream every attempt of this message carries this id (its sequence id);
        // `SendMessage` attempts take a new one each, as before.
        let request_id = self.request_ids.fetch_add(1, Ordering::Relaxed);
        match self.send_round(tasks, message, request_id).await {
            Err(error) if error.is_retryable() => {
                tracing::warn!(topic = %self.topic, %error, "send retries spent: registering the producer again");
                if let Some(stale) = self.current() {
                    stale.valid.cancel();
                }
                self.send_round(tasks, message, request_id).await
            }
            outcome => outcome,
        }
    }

    async fn send_round(
        &self,
        tasks: &OwnedTasks,
        message: &Outgoing,
        request_id: u64,
    ) -> Result<u64, BrokerError> {
        // The paths a send rarely takes (registering, re-lookup, opening the stream, the
        // `SendMessage` fallback) are boxed: inline, their tonic futures made every send's
        // future 19.6 KB, allocated and copied per message; boxed, 4.7 KB.
        self.core
            .retrying(tasks.token(), |attempt| async move {
                let attachment = match self.current() {
                    Some(attachment) if attachment.is_valid() => attachment,
                    // Never registered, or the broker answered CLOSE: register (again).
                    _ => Box::pin(self.attach_once(tasks)).await?,
                };
                let url = if attempt > 1 {
                    Box::pin(self.core.locate(&self.topic, &attachment.url)).await
                } else {
                    attachment.url.clone()
                };
                if message.payload.len() <= MAX_STREAMED_PAYLOAD
                    && self.streaming.load(Ordering::Relaxed)
                {
                    self.stream_once(tasks, &attachment, &url, message, request_id)
                        .await
                } else {
                    Box::pin(self.send_once(&attachment, &url, message)).await
                }
            })
            .await
    }

    /// One attempt on the client's send stream to `url` (opened if none is); falls back to
    /// `SendMessage` for a broker without it.
    async fn stream_once(
        &self,
        tasks: &OwnedTasks,
        attachment: &Attachment,
        url: &str,
        message: &Outgoing,
        request_id: u64,
    ) -> Result<u64, BrokerError> {
        if tasks.token().is_cancelled() {
            return Err(BrokerError::Closed);
        }
        let held = self
            .stream_slot()
            .as_ref()
            .filter(|stream| stream.serves(url))
            .cloned();
        let stream = match held {
            Some(stream) => stream,
            None => {
                let shared = self.streams.to_or_open(&self.core, url, &self.topic);
                match Box::pin(shared).await {
                    Ok(stream) => {
                        // Replacing the previous one lets it end once nobody holds it.
                        *self.stream_slot() = Some(stream.clone());
                        stream
                    }
                    Err(error) => {
                        return Box::pin(self.unstreamed(attachment, url, message, error)).await;
                    }
                }
            }
        };
        let wire = self.wire(attachment, url, message, request_id);
        let answer = stream.send(wire, self.core.call_timeout).await;
        if let Err(error) = &answer
            && matches!(
                error.code(),
                Code::Unauthenticated | Code::PermissionDenied | Code::DeadlineExceeded
            )
        {
            // The stream's credential was refused (expired, revoked): a new stream carries the
            // one the retry loop fetches next. Or it stalled: the next attempt gets a new
            // HTTP/2 stream, as a unary call's would.
            self.retire(&stream);
        }
        answer.map_err(|e| BrokerError::rpc("SendMessage", &self.topic, e))
    }

    /// The send stream could not be opened (`error`): a broker without it gets `SendMessage`
    /// from now on; any other failure is the attempt's.
    async fn unstreamed(
        &self,
        attachment: &Attachment,
        url: &str,
        message: &Outgoing,
        error: BrokerError,
    ) -> Result<u64, BrokerError> {
        match error.code() {
            Some(Code::Unimplemented) => {
                tracing::debug!(topic = %self.topic, %url, "the broker has no send stream: sending with SendMessage per message");
                self.streaming.store(false, Ordering::Relaxed);
                self.send_once(attachment, url, message).await
            }
            // A Courier broker older than the stream with auth on refuses the unknown call
            // (its guard asks an admin role for it): if `SendMessage` then goes through, the
            // call was refused, not the producer.
            Some(Code::PermissionDenied) => {
                let sent = self.send_once(attachment, url, message).await;
                if sent.is_ok() {
                    tracing::debug!(topic = %self.topic, %url, "send stream refused where SendMessage is not: sending with SendMessage per message");
                    self.streaming.store(false, Ordering::Relaxed);
                }
                sent
            }
            _ => Err(error),
        }
    }

    fn stream_slot(&self) -> std::sync::MutexGuard<'_, Option<Arc<SendStream>>> {
        self.stream.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops using `stream` for new sends, for every producer of the client.
    fn retire(&self, stream: &Arc<SendStream>) {
        self.streams.retire(stream);
        let mut slot = self.stream_slot();
        if slot.as_ref().is_some_and(|open| Arc::ptr_eq(open, stream)) {
            *slot = None;
        }
    }

    /// Lets go of the send stream (the producer closes); the last producer holding it stops
    /// its reader.
    pub(crate) async fn release_stream(&self) {
        let held = self.stream_slot().take();
        if let Some(stream) = held.and_then(Arc::into_inner) {
            stream.close().await;
        }
    }

    /// One attempt with Danube's `SendMessage` (a new request id each).
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
        let request_id = self.request_ids.fetch_add(1, Ordering::Relaxed);
        let request = core
            .request(&call, self.wire(attachment, url, message, request_id))
            .await
            .map_err(|e| BrokerError::rpc("SendMessage", &self.topic, e))?;
        let answer = call
            .unary(client.send_message(request))
            .await
            .map_err(|e| BrokerError::rpc("SendMessage", &self.topic, e))?;
        Ok(answer.request_id)
    }

    /// `message` as sent to `url` under `attachment`.
    fn wire(
        &self,
        attachment: &Attachment,
        url: &str,
        message: &Outgoing,
        request_id: u64,
    ) -> StreamMessage {
        let publish_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        StreamMessage {
            request_id,
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
        }
    }
}
