//! [`Producer`] and its builder: messages to a topic, or spread over its partitions.

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use courier_impls::grpc::proto::danube::{DispatchStrategy, ProducerAccessMode};
use courier_traits::error::InvalidInput;

use super::core::ClientCore;
use super::error::BrokerError;
use super::partition_producer::{Outgoing, PartitionProducer, ProducerMode};
use super::routing::PartitionRouter;
use super::schemas::{SchemaClient, SchemaRef};
use super::send_stream::SendStreams;
use super::tasks::OwnedTasks;
use crate::topic::{TopicName, partition_producer_name};

/// Configures a [`Producer`]; made by [`BrokerClient::producer`](super::BrokerClient::producer).
#[derive(Debug)]
#[must_use = "a builder does nothing until create() is awaited"]
pub struct ProducerBuilder {
    core: Arc<ClientCore>,
    streams: Arc<SendStreams>,
    topic: String,
    name: Option<String>,
    partitions: Option<u32>,
    mode: ProducerMode,
    schema: Option<SchemaRef>,
}

impl ProducerBuilder {
    pub(crate) fn new(
        core: Arc<ClientCore>,
        streams: Arc<SendStreams>,
        topic: String,
    ) -> ProducerBuilder {
        ProducerBuilder {
            core,
            streams,
            topic,
            name: None,
            partitions: None,
            mode: ProducerMode {
                dispatch: DispatchStrategy::NonReliable,
                access: ProducerAccessMode::Shared,
            },
            schema: None,
        }
    }

    /// The producer's name (required). The broker derives the producer id from the topic and
    /// this name, so re-creating with the same name is the same producer.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Reliable dispatch: messages are stored before `send` returns and delivered at least
    /// once. Without it the topic is non-reliable (live fan-out, nothing stored). A topic
    /// keeps the strategy its first producer chose.
    pub fn reliable(mut self) -> Self {
        self.mode.dispatch = DispatchStrategy::Reliable;
        self
    }

    /// Spreads messages over `partitions` partition topics `<topic>-part-<i>` (producer
    /// `<name>-<i>` on each): round-robin, or by the key's FNV-1a hash.
    pub fn partitions(mut self, partitions: u32) -> Self {
        self.partitions = Some(partitions);
        self
    }

    /// Asks for exclusive access: the broker refuses producers of other names on the topic
    /// (`FailedPrecondition`).
    pub fn exclusive(mut self) -> Self {
        self.mode.access = ProducerAccessMode::Exclusive;
        self
    }

    /// Declares the schema the messages follow: resolved once at create to (schema id,
    /// version), stamped on every message; the subject binds the topic on the broker.
    pub fn schema(mut self, reference: SchemaRef) -> Self {
        self.schema = Some(reference);
        self
    }

    /// Registers the producer on every partition (under the client's retry policy) and
    /// starts their health checks.
    ///
    /// Errors: [`BrokerError::InvalidInput`] for a bad topic, an empty name or 0 partitions,
    /// or a schema reference naming a version that does not exist; the broker's refusal ([`BrokerError::Rpc`]), or the last transient error once the
    /// retry policy gives up.
    pub async fn create(self) -> Result<Producer, BrokerError> {
        let topic = TopicName::new(&self.topic)?;
        let name = match self.name {
            Some(name) if !name.is_empty() => name,
            _ => {
                return Err(
                    InvalidInput::new("producer name", "", "a producer needs a name").into(),
                );
            }
        };
        let targets: Vec<(String, String)> = match self.partitions {
            None => vec![(topic.to_string(), name)],
            Some(0) => {
                return Err(InvalidInput::new(
                    "partitions",
                    "0",
                    "at least 1 (leave it unset for a topic without partitions)",
                )
                .into());
            }
            Some(count) => (0..count)
                .map(|index| {
                    Ok((
                        topic.partition(index)?.to_string(),
                        partition_producer_name(&name, index),
                    ))
                })
                .collect::<Result<_, InvalidInput>>()?,
        };
        let schema = match &self.schema {
            Some(reference) => {
                let resolved = SchemaClient::new(self.core.clone())
                    .resolve(reference)
                    .await?;
                Some((reference.to_wire(), resolved))
            }
            None => None,
        };
        let tasks = OwnedTasks::new(self.core.live_tasks.clone());
        let partitions: Vec<PartitionProducer> = targets
            .into_iter()
            .map(|(topic, name)| {
                PartitionProducer::new(
                    self.core.clone(),
                    self.streams.clone(),
                    topic,
                    name,
                    self.mode,
                )
                .with_schema(schema.clone())
            })
            .collect();
        for partition in &partitions {
            partition.create(&tasks).await?;
        }
        Ok(Producer {
            topic,
            router: PartitionRouter::new(partitions.len()),
            partitions,
            tasks,
        })
    }
}

/// Sends messages to one topic. `send` takes `&self`: share a producer between tasks with an
/// `Arc`. Dropping it stops its health checks; [`close`](Self::close) does so and waits.
///
/// Send from a spawned task rather than from `block_on`'s future (a `#[tokio::main]` body):
/// each answer reaches its send through a task of the producer, and waking a send that runs
/// outside the runtime's workers costs a thread wake-up per message (measured in
/// `benches/README.md`: 23-45 % of the client's CPU per message).
#[derive(Debug)]
pub struct Producer {
    topic: TopicName,
    partitions: Vec<PartitionProducer>,
    router: PartitionRouter,
    tasks: OwnedTasks,
}

impl Producer {
    /// The topic.
    pub fn topic(&self) -> &TopicName {
        &self.topic
    }

    /// The producer ids the broker gave, one per partition (in partition order).
    pub fn producer_ids(&self) -> Vec<Option<u64>> {
        self.partitions.iter().map(|p| p.producer_id()).collect()
    }

    /// A message with `payload`; set a key or attributes on the returned [`PendingSend`], then
    /// `.await` it for the sequence id.
    pub fn send(&self, payload: impl Into<Bytes>) -> PendingSend<'_> {
        PendingSend {
            producer: self,
            message: Outgoing {
                payload: payload.into(),
                key: None,
                attributes: HashMap::new(),
            },
        }
    }

    /// Stops the health checks (waiting at most 100 ms) and refuses later sends with
    /// [`BrokerError::Closed`]. The broker keeps the producer registered: Danube's protocol
    /// has no call to close one.
    pub async fn close(&self) {
        self.tasks.close().await;
        for partition in &self.partitions {
            partition.release_stream().await;
        }
    }

    async fn deliver(&self, message: Outgoing) -> Result<u64, BrokerError> {
        let index = self.router.partition(message.key.as_deref());
        let partition = self
            .partitions
            .get(index)
            .ok_or_else(|| BrokerError::Protocol(format!("no partition {index}")))?;
        partition.send(&self.tasks, &message).await
    }
}

/// One message being sent; `.await` it for its sequence id. Reliable topics answer once the
/// message is stored.
#[derive(Debug)]
#[must_use = "nothing is sent until it is awaited"]
pub struct PendingSend<'a> {
    producer: &'a Producer,
    message: Outgoing,
}

impl PendingSend<'_> {
    /// The routing key: picks the partition (FNV-1a) and, on KeyShared subscriptions, the
    /// consumer.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.message.key = Some(key.into());
        self
    }

    /// Replaces the message's attributes.
    pub fn attributes(mut self, attributes: HashMap<String, String>) -> Self {
        self.message.attributes = attributes;
        self
    }

    /// Adds one attribute.
    pub fn attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.message.attributes.insert(name.into(), value.into());
        self
    }
}

impl<'a> IntoFuture for PendingSend<'a> {
    type Output = Result<u64, BrokerError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.producer.deliver(self.message))
    }
}
