//! The `danube.ProducerService`: CreateProducer and SendMessage with the rules of spec §1–2.
//!
//! - `producer_id` = [`producer_id`]`(topic, name)`: creating again is idempotent, and after a
//!   restart a send whose id matches its `msg_id.topic_name` and `producer_name` re-attaches
//!   silently; any other unknown id, and a producer released for idleness, is `Unavailable`
//!   (the client re-creates, with its access mode).
//! - The first producer creates the topic with its dispatch strategy (if
//!   `auto_create_topics`); the other strategy later is `FailedPrecondition`, a plain topic
//!   beside its partitions (or the reverse) `AlreadyExists`.
//! - `Exclusive` access refuses other names (`FailedPrecondition`); the per-topic producer
//!   limit is `ResourceExhausted`; a message whose encoding exceeds `max_message_bytes` is
//!   `InvalidArgument`.
//! - `SendMessage` answers once the message is durable (reliable) or handed to the live
//!   fan-out (non-reliable), echoing the `request_id`.
//! - With [`ProduceService::with_schemas`], a schema reference binds the topic to its subject
//!   and messages on bound topics are checked by the topic's policy
//!   ([`crate::schema_registry::topics`]); `schema_id` / `schema_version` are stored as sent.
//! - [`ProduceStream`] serves Courier's `ProduceStreamService/SendMessages`: a producer's
//!   sends on one open stream, each handled as its `SendMessage` would be.

mod registry;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use courier_impls::grpc::proto::danube::producer_service_server::ProducerService;
use courier_impls::grpc::proto::danube::{
    DispatchStrategy, MessageResponse, MsgId, ProducerAccessMode, ProducerRequest,
    ProducerResponse, StreamMessage,
};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::catalog::{Catalog, Dispatch, TopicEntry};
use crate::lifecycle::Lifecycle;
use crate::schema_registry::TopicSchemas;
use crate::status::{catalog_status, invalid_argument, write_status};
use crate::topic::TopicName;
pub use registry::{
    DEFAULT_PRODUCER_IDLE_TIMEOUT, ProducerRecord, ProducerRegistry, RegisterError, producer_id,
};
pub use stream::{MAX_IN_FLIGHT, Outcomes, ProduceStream, SEND_MESSAGES_PATH};

/// The default largest encoded `StreamMessage`: 4 MiB − 64 KiB, so that a delivery (the
/// message plus what the broker adds) stays within the 4 MiB danube-client decodes.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = (4 << 20) - (64 << 10);

/// The longest producer name, in bytes.
pub const MAX_PRODUCER_NAME_BYTES: usize = 255;

/// The producer side's settings; the defaults are the spec's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerConfig {
    /// Largest encoded `StreamMessage` accepted by SendMessage.
    pub max_message_bytes: usize,
    /// Producers per topic (each partition counts alone).
    pub max_producers_per_topic: usize,
    /// Whether CreateProducer creates unknown topics (else `NotFound`).
    pub auto_create_topics: bool,
    /// A producer not heard from (no send, no health check) for this long gives its place,
    /// and its Exclusive claim, to the next producer registering on its topic.
    pub idle_timeout: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_producers_per_topic: 1_000,
            auto_create_topics: true,
            idle_timeout: registry::DEFAULT_PRODUCER_IDLE_TIMEOUT,
        }
    }
}

impl ProducerConfig {
    /// The decode limit for tonic's server: above `max_message_bytes` with room to spare, so
    /// an over-size message reaches the broker's check (`InvalidArgument`) instead of tonic's
    /// (`ResourceExhausted`, which the client would retry forever).
    pub fn decode_limit(&self) -> usize {
        self.max_message_bytes.saturating_mul(4).max(16 << 20)
    }
}

/// Serves `danube.ProducerService` over a [`Catalog`].
#[derive(Debug)]
pub struct ProduceService {
    catalog: Arc<Catalog>,
    producers: Arc<ProducerRegistry>,
    lifecycle: Arc<Lifecycle>,
    /// What `msg_id.broker_addr` says: this node's broker URL.
    broker_url: String,
    config: ProducerConfig,
    /// Schema binding and message checks; `None` = schema references are not checked.
    schemas: Option<Arc<TopicSchemas>>,
}

impl ProduceService {
    /// The service of the node reached at `broker_url`.
    pub fn new(
        catalog: Arc<Catalog>,
        producers: Arc<ProducerRegistry>,
        lifecycle: Arc<Lifecycle>,
        broker_url: String,
        config: ProducerConfig,
    ) -> ProduceService {
        ProduceService {
            catalog,
            producers,
            lifecycle,
            broker_url,
            config,
            schemas: None,
        }
    }

    /// Checks schema references and messages against the schema registry.
    pub fn with_schemas(mut self, schemas: Arc<TopicSchemas>) -> ProduceService {
        self.schemas = Some(schemas);
        self
    }

    /// CreateProducer.
    ///
    /// Errors: see the [module docs](self).
    pub async fn create(&self, request: ProducerRequest) -> Result<ProducerResponse, Status> {
        self.lifecycle.admit()?;
        let topic = TopicName::new(&request.topic_name).map_err(invalid_argument)?;
        check_producer_name(&request.producer_name)?;
        let exclusive = match ProducerAccessMode::try_from(request.producer_access_mode) {
            Ok(mode) => mode == ProducerAccessMode::Exclusive,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "invalid producer_access_mode {}: 0 (Shared) or 1 (Exclusive)",
                    request.producer_access_mode
                )));
            }
        };
        let dispatch = match DispatchStrategy::try_from(request.dispatch_strategy) {
            Ok(DispatchStrategy::NonReliable) => Dispatch::NonReliable,
            Ok(DispatchStrategy::Reliable) => Dispatch::Reliable,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "invalid dispatch_strategy {}: 0 (NonReliable) or 1 (Reliable)",
                    request.dispatch_strategy
                )));
            }
        };
        if !self.config.auto_create_topics && self.catalog.topic(&topic).is_none() {
            return Err(Status::not_found(format!(
                "topic {topic} does not exist (auto_create_topics is off)"
            )));
        }
        self.catalog
            .ensure_topic(&topic, dispatch)
            .await
            .map_err(catalog_status)?;
        if let (Some(schemas), Some(reference)) = (&self.schemas, &request.schema_ref) {
            schemas.bind_producer(&topic, reference).await?;
        }
        let producer_id = self
            .producers
            .register(&topic, &request.producer_name, exclusive)
            .map_err(register_status)?;
        tracing::debug!(%topic, producer = request.producer_name, producer_id, %dispatch, "producer created");
        Ok(ProducerResponse {
            request_id: request.request_id,
            producer_id,
            producer_name: request.producer_name,
        })
    }

    /// SendMessage: returns once the message is durable (reliable) or queued (non-reliable).
    ///
    /// Errors: see the [module docs](self).
    pub async fn send(&self, message: StreamMessage) -> Result<MessageResponse, Status> {
        self.lifecycle.admit()?;
        let size = message.encoded_len();
        if size > self.config.max_message_bytes {
            return Err(Status::invalid_argument(format!(
                "message of {size} bytes exceeds max_message_bytes {}",
                self.config.max_message_bytes
            )));
        }
        let Some(id) = message.msg_id.as_ref() else {
            return Err(Status::invalid_argument(
                "msg_id is missing: it must carry the producer_id and topic_name",
            ));
        };
        let (record, topic) = self.producer_of(id, &message.producer_name)?;
        if let Some(schemas) = &self.schemas {
            schemas.check_message(&record.topic, &message).await?;
        }
        let request_id = message.request_id;
        let stored = StreamMessage {
            msg_id: Some(MsgId {
                producer_id: id.producer_id,
                topic_name: record.topic.to_string(),
                broker_addr: self.broker_url.clone(),
                // Assigned by the topic: the producer's value (always 0) means nothing.
                topic_offset: 0,
            }),
            producer_name: record.name,
            subscription_name: String::new(),
            ..message
        };
        topic.publish(stored).await.map_err(write_status)?;
        Ok(MessageResponse { request_id })
    }

    /// The producer a send comes from, re-attached if this node restarted since its create.
    fn producer_of(
        &self,
        id: &MsgId,
        producer_name: &str,
    ) -> Result<(ProducerRecord, Arc<TopicEntry>), Status> {
        let not_attached = || {
            Status::unavailable(format!(
                "producer {} is not attached to this broker; create it again",
                id.producer_id
            ))
        };
        let record = match self.producers.get(id.producer_id) {
            Some(record) => {
                if record.topic.as_str() != id.topic_name {
                    return Err(Status::invalid_argument(format!(
                        "msg_id.topic_name {:?} is not producer {}'s topic {}",
                        id.topic_name, id.producer_id, record.topic
                    )));
                }
                record
            }
            None if self.producers.was_released(id.producer_id) => {
                // Re-attaching would make it Shared whatever its access mode: an Exclusive
                // producer would write beside the one that took its place, unaware.
                return Err(Status::unavailable(format!(
                    "producer {} was released: not heard from for {:?}; create the producer again",
                    id.producer_id, self.config.idle_timeout
                )));
            }
            None => {
                // Re-attach: the id is derived from (topic, name), so a match proves this is
                // the producer a previous run of this node created.
                let topic = TopicName::new(&id.topic_name).map_err(|_| not_attached())?;
                if producer_id(&topic, producer_name) != id.producer_id
                    || self.catalog.topic(&topic).is_none()
                {
                    return Err(not_attached());
                }
                // Re-attached as Shared: an Exclusive claim did not survive the restart.
                self.producers
                    .register(&topic, producer_name, false)
                    .map_err(register_status)?;
                tracing::debug!(%topic, producer = producer_name, "producer re-attached");
                ProducerRecord {
                    topic,
                    name: producer_name.to_owned(),
                }
            }
        };
        let topic = self.catalog.topic(&record.topic).ok_or_else(not_attached)?;
        Ok((record, topic))
    }
}

fn check_producer_name(name: &str) -> Result<(), Status> {
    let reason = if name.is_empty() {
        "must not be empty".to_owned()
    } else if name.len() > MAX_PRODUCER_NAME_BYTES {
        format!("{} bytes; at most {MAX_PRODUCER_NAME_BYTES}", name.len())
    } else if name.chars().any(char::is_control) {
        "must not contain control characters".to_owned()
    } else {
        return Ok(());
    };
    Err(Status::invalid_argument(format!(
        "invalid producer_name {name:?}: {reason}"
    )))
}

fn register_status(error: RegisterError) -> Status {
    match error {
        RegisterError::Exclusive { .. } => Status::failed_precondition(error.to_string()),
        RegisterError::Limit { .. } => Status::resource_exhausted(error.to_string()),
        RegisterError::IdCollision { .. } => Status::already_exists(error.to_string()),
    }
}

#[tonic::async_trait]
impl ProducerService for ProduceService {
    async fn create_producer(
        &self,
        request: Request<ProducerRequest>,
    ) -> Result<Response<ProducerResponse>, Status> {
        self.create(request.into_inner()).await.map(Response::new)
    }

    async fn send_message(
        &self,
        request: Request<StreamMessage>,
    ) -> Result<Response<MessageResponse>, Status> {
        self.send(request.into_inner()).await.map(Response::new)
    }
}
