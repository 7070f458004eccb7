//! [`Consumer`] and its builder: a subscription's messages from every partition of a topic,
//! as one `Stream`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use courier_impls::grpc::proto::danube::TopicLookupRequest;
use courier_impls::grpc::proto::danube::consumer_request::SubscriptionType;
use courier_impls::grpc::proto::danube::discovery_client::DiscoveryClient;
use courier_traits::error::InvalidInput;
use futures::Stream;
use futures::future::try_join_all;
use tokio::sync::mpsc;

use super::core::ClientCore;
use super::error::BrokerError;
use super::message::{Message, Partitions};
use super::partition_consumer::{PartitionConsumer, SubscriptionSpec};
use super::receiver;
use super::tasks::OwnedTasks;
use crate::topic::TopicName;

/// Deliveries buffered between the partition tasks and the reader (spec §6).
const DELIVERY_BUFFER: usize = 100;

/// How a subscription shares its messages among its consumers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Subscription {
    /// One consumer; another name is refused, the same name takes over.
    Exclusive,
    /// Round-robin over the connected consumers.
    Shared,
    /// The first connected consumer gets everything; the next takes over when it leaves.
    Failover,
    /// By routing key: one key always goes to the same consumer, in order.
    KeyShared,
}

impl From<Subscription> for SubscriptionType {
    fn from(kind: Subscription) -> SubscriptionType {
        match kind {
            Subscription::Exclusive => SubscriptionType::Exclusive,
            Subscription::Shared => SubscriptionType::Shared,
            Subscription::Failover => SubscriptionType::Failover,
            Subscription::KeyShared => SubscriptionType::KeyShared,
        }
    }
}

/// Configures a [`Consumer`]; made by [`BrokerClient::consumer`](super::BrokerClient::consumer).
#[derive(Debug)]
#[must_use = "a builder does nothing until subscribe() is awaited"]
pub struct ConsumerBuilder {
    core: Arc<ClientCore>,
    topic: String,
    name: Option<String>,
    subscription: Option<String>,
    kind: Subscription,
    key_filters: Vec<String>,
}

impl ConsumerBuilder {
    pub(crate) fn new(core: Arc<ClientCore>, topic: String) -> ConsumerBuilder {
        ConsumerBuilder {
            core,
            topic,
            name: None,
            subscription: None,
            kind: Subscription::Shared,
            key_filters: Vec::new(),
        }
    }

    /// The consumer's name (required).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The subscription to join (required): its cursor and type are the broker's.
    pub fn subscription(mut self, subscription: impl Into<String>) -> Self {
        self.subscription = Some(subscription.into());
        self
    }

    /// An [`Exclusive`](Subscription::Exclusive) subscription.
    pub fn exclusive(self) -> Self {
        self.kind(Subscription::Exclusive)
    }

    /// A [`Shared`](Subscription::Shared) subscription (the default).
    pub fn shared(self) -> Self {
        self.kind(Subscription::Shared)
    }

    /// A [`Failover`](Subscription::Failover) subscription.
    pub fn failover(self) -> Self {
        self.kind(Subscription::Failover)
    }

    /// A [`KeyShared`](Subscription::KeyShared) subscription.
    pub fn key_shared(self) -> Self {
        self.kind(Subscription::KeyShared)
    }

    /// The subscription type.
    pub fn kind(mut self, kind: Subscription) -> Self {
        self.kind = kind;
        self
    }

    /// On a KeyShared subscription, receive only keys matching `glob` (`*`, `?`); several
    /// filters match any.
    pub fn key_filter(mut self, glob: impl Into<String>) -> Self {
        self.key_filters.push(glob.into());
        self
    }

    /// Lists the topic's partitions (at the service URL), subscribes to each, concurrently,
    /// under the retry policy, and starts one task per partition.
    ///
    /// Errors: [`BrokerError::InvalidInput`] for a bad topic or a missing name or
    /// subscription; [`BrokerError::NoSuchTopic`] when the broker lists no partition; the
    /// broker's refusal of a subscription, or the last transient error once the policy gives
    /// up.
    pub async fn subscribe(self) -> Result<Consumer, BrokerError> {
        let topic = TopicName::new(&self.topic)?;
        let consumer_name = required("consumer name", self.name)?;
        let subscription = required("subscription", self.subscription)?;
        let tasks = Arc::new(OwnedTasks::new(self.core.live_tasks.clone()));
        let names = self
            .core
            .retrying(tasks.token(), |_| partitions_once(&self.core, &topic))
            .await?;
        if names.is_empty() {
            return Err(BrokerError::NoSuchTopic(topic.to_string()));
        }
        let spec = Arc::new(SubscriptionSpec {
            consumer_name,
            subscription,
            kind: self.kind.into(),
            key_filters: self.key_filters,
        });
        let mut partitions = Partitions::new();
        for name in names {
            check_partition(&topic, &name)?;
            let partition =
                PartitionConsumer::new(self.core.clone(), name.clone(), spec.clone(), &tasks);
            partitions.insert(name, Arc::new(partition));
        }
        try_join_all(partitions.values().map(|p| p.subscribe())).await?;
        let partitions = Arc::new(partitions);
        let (deliveries, receiver) = mpsc::channel(DELIVERY_BUFFER);
        for partition in partitions.values() {
            tasks.spawn(receiver::run(
                partition.clone(),
                partitions.clone(),
                deliveries.clone(),
            ));
        }
        Ok(Consumer {
            topic,
            partitions,
            receiver,
            tasks,
        })
    }
}

fn required(field: &'static str, value: Option<String>) -> Result<String, BrokerError> {
    match value {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(InvalidInput::new(field, "", "required").into()),
    }
}

/// `TopicPartitions` at the service URL.
async fn partitions_once(core: &ClientCore, topic: &TopicName) -> Result<Vec<String>, BrokerError> {
    let url = &core.service_url;
    let call = core.call(url);
    let mut discovery =
        DiscoveryClient::new(core.channel(url, "TopicPartitions", topic.as_str())?);
    let request = core
        .request(
            &call,
            TopicLookupRequest {
                request_id: core.next_request_id(),
                topic: topic.to_string(),
            },
        )
        .await
        .map_err(|e| BrokerError::rpc("TopicPartitions", topic.as_str(), e))?;
    let answer = call
        .unary(discovery.topic_partitions(request))
        .await
        .map_err(|e| BrokerError::rpc("TopicPartitions", topic.as_str(), e))?;
    Ok(answer.partitions)
}

/// A listed partition must be the topic itself or one of its `-part-<i>` topics: anything
/// else would subscribe this consumer to a topic it never asked for.
fn check_partition(topic: &TopicName, listed: &str) -> Result<(), BrokerError> {
    let belongs = listed == topic.as_str()
        || TopicName::new(listed)
            .ok()
            .and_then(|name| name.as_partition())
            .is_some_and(|(base, _)| &base == topic);
    if belongs {
        Ok(())
    } else {
        Err(BrokerError::Protocol(format!(
            "TopicPartitions({topic}) listed {listed:?}, which is not a partition of it"
        )))
    }
}

/// A subscription's messages from every partition of a topic: a
/// `Stream<Item = Result<Message, BrokerError>>`.
///
/// An `Err` item reports a failure the consumer could not get past alone: a partition whose
/// subscription the broker refused ends after its error; a transient failure the retry
/// policy gave up on is reported and the partition keeps trying. The stream ends when every
/// partition has ended, or after [`close`](Self::close).
#[derive(Debug)]
pub struct Consumer {
    topic: TopicName,
    partitions: Arc<Partitions>,
    receiver: mpsc::Receiver<Result<Message, BrokerError>>,
    /// Held only here (partitions keep a `Weak`): dropping the consumer stops its tasks.
    tasks: Arc<OwnedTasks>,
}

impl Consumer {
    /// The topic.
    pub fn topic(&self) -> &TopicName {
        &self.topic
    }

    /// The topics subscribed to: the topic itself, or its partitions, sorted.
    pub fn partitions(&self) -> Vec<String> {
        let mut names: Vec<String> = self.partitions.keys().cloned().collect();
        names.sort();
        names
    }

    /// The consumer id on each partition, as the broker gave it last.
    pub fn consumer_ids(&self) -> HashMap<String, Option<u64>> {
        self.partitions
            .iter()
            .map(|(name, p)| (name.clone(), p.current().map(|a| a.id)))
            .collect()
    }

    /// Stops the partition tasks and their health checks (they get at most 100 ms, then are
    /// aborted). Messages already buffered can still be read; acks after this fail with
    /// [`BrokerError::Closed`]. Unacked messages of a reliable subscription are redelivered
    /// by the broker.
    pub async fn close(&self) {
        self.tasks.close().await;
    }
}

impl Stream for Consumer {
    type Item = Result<Message, BrokerError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx)
    }
}
