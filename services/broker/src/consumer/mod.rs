//! The `danube.ConsumerService` (Subscribe, ReceiveMessages, Ack, Nack) over the
//! [subscription engine](crate::subscription) (spec §2 "Subscriptions", "Reliable",
//! "Non-reliable"; storage layout §3).
//!
//! Each subscription (a topic and a name) has an engine; a reliable one also a task, which reads
//! the topic log after the durable cursor (a new subscription starts at the log's tail), woken
//! by the storage's `wait`; acks move the cursor, checkpointed to
//! `broker/c/<ns>/<topic>/<sub>` at most every [`ConsumerConfig::cursor_flush_interval`] or
//! [`ConsumerConfig::cursor_flush_acks`] acks, and on shutdown; dead letters go to
//! `broker/dlq/<ns>/<topic>/<sub>` (the message with attributes [`DEAD_LETTER_REASON`] and
//! [`DEAD_LETTER_DELIVERIES`]). Non-reliable: no task; the topic's live fan-out queues each
//! message into the subscription's bounded per-consumer queues in the producer's call; Ack and
//! Nack are no-ops.
//!
//! Consumers are known by random ids; a `ReceiveMessages` with an unknown one answers
//! `Unavailable` (the client subscribes again). A consumer with no open stream still buffers
//! (within the window, or its queue). Consumers stay attached when their stream ends (they
//! reopen it with the same id); they leave when replaced (Exclusive) or when the service stops.
//! A topic at its subscription cap closes its subscriptions nobody uses (no consumer streaming
//! or within its grace, everything stored) to make room: their consumers leave with them.
//! A node that stops serving a topic [releases](ConsumerService::release_topic) its
//! subscriptions without checkpointing: the new owner's cursor is the one that counts.

mod ack_batch;
mod checkpoint;
mod clock;
mod config;
mod handle;
mod names;
mod pump;
mod receive;
mod routing;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use courier_impls::grpc::proto::danube::consumer_service_server::ConsumerService as ConsumerApi;
use courier_impls::grpc::proto::danube::{
    AckRequest, AckResponse, ConsumerRequest, ConsumerResponse, MsgId, NackRequest, NackResponse,
    ReceiveRequest,
};
use courier_traits::error::Classify;
use courier_traits::storage::StorageError;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::catalog::{Catalog, Dispatch, LiveSink, TopicDelivery, TopicEntry};
use crate::directory::{Owner, TopicView};
use crate::metrics::BrokerMetrics;
use crate::status::invalid_argument;
use crate::subscription::{
    LiveSubscription, ReliableSubscription, SubscribeError, SubscriptionType,
};
use crate::topic::TopicName;
use crate::writer::AppendedSink;
use checkpoint::{Checkpoint, CursorStore};
use clock::TokioClock;
pub use config::ConsumerConfig;
use handle::{Engine, Follow, ReliableState, SubscriptionHandle};
pub use names::{MAX_SUBSCRIPTION_BYTES, SubscriptionName, cursor_stream, dead_letter_stream};
pub use pump::{DEAD_LETTER_DELIVERIES, DEAD_LETTER_REASON};
pub use receive::MessageStream;

/// The most offsets one `AckMany` call may settle (Courier's client sends at most 1 024).
pub const MAX_ACK_MANY_OFFSETS: usize = 4_096;

/// `AckMany`'s request size limit: [`MAX_ACK_MANY_OFFSETS`] varints of at most 10 bytes, and
/// the topic and subscription names.
pub(crate) const ACK_MANY_DECODE_LIMIT: usize = 128 << 10;

/// The longest consumer name and key filter, in bytes.
const MAX_NAME_BYTES: usize = 255;
/// The most key filters one consumer may give.
const MAX_KEY_FILTERS: usize = 64;

/// The consumer side of the broker. Cheap to clone; clones share the subscriptions.
#[derive(Clone, Debug)]
pub struct ConsumerService {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    catalog: Arc<Catalog>,
    config: ConsumerConfig,
    clock: TokioClock,
    registry: Mutex<Registry>,
    /// Stops every subscription's task and stream.
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    metrics: Arc<BrokerMetrics>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

type SubscriptionCell = Arc<OnceCell<Arc<SubscriptionHandle>>>;

#[derive(Debug, Default)]
struct Registry {
    /// Each topic's subscriptions, opened once each (opening a reliable one reads its cursor
    /// from storage). A topic without subscriptions has no entry.
    subscriptions: HashMap<TopicName, HashMap<SubscriptionName, SubscriptionCell>>,
    consumers: HashMap<u64, Arc<SubscriptionHandle>>,
}

impl Registry {
    fn cell(&self, topic: &TopicName, name: &SubscriptionName) -> Option<&SubscriptionCell> {
        self.subscriptions.get(topic)?.get(name)
    }

    /// Whether `handle` is still the open subscription of its topic and name.
    fn is_current(&self, handle: &Arc<SubscriptionHandle>) -> bool {
        self.cell(&handle.topic, &handle.name)
            .and_then(|cell| cell.get())
            .is_some_and(|current| Arc::ptr_eq(current, handle))
    }

    /// Closes the subscriptions of `topic` that nobody uses and forgets their consumers.
    /// Returns them, to be stopped outside the lock.
    fn evict_unused(&mut self, topic: &TopicName) -> Vec<Arc<SubscriptionHandle>> {
        let Some(on_topic) = self.subscriptions.get_mut(topic) else {
            return Vec::new();
        };
        let mut evicted = Vec::new();
        on_topic.retain(|_, cell| match cell.get() {
            Some(handle) if handle.unused() => {
                evicted.push(handle.clone());
                false
            }
            _ => true,
        });
        if !evicted.is_empty() {
            self.consumers
                .retain(|_, handle| !evicted.iter().any(|gone| Arc::ptr_eq(gone, handle)));
        }
        evicted
    }
}

impl ConsumerService {
    /// Consumers of the topics in `catalog` (their logs in the catalog's storage). Call within
    /// a tokio runtime.
    pub fn new(catalog: Arc<Catalog>, config: ConsumerConfig) -> ConsumerService {
        ConsumerService::with_metrics(catalog, config, Arc::new(BrokerMetrics::new()))
    }

    /// [`new`](Self::new), counting deliveries, acks, nacks and dead letters into `metrics`.
    pub fn with_metrics(
        catalog: Arc<Catalog>,
        config: ConsumerConfig,
        metrics: Arc<BrokerMetrics>,
    ) -> ConsumerService {
        ConsumerService {
            shared: Arc::new(Shared {
                catalog,
                config,
                clock: TokioClock::start(),
                registry: Mutex::new(Registry::default()),
                stop: CancellationToken::new(),
                tasks: Mutex::new(Vec::new()),
                metrics,
            }),
        }
    }

    /// Whether consumer `id` is attached here (what health checks answer `OK` for).
    pub fn holds(&self, consumer_id: u64) -> bool {
        let handle = self.registry().consumers.get(&consumer_id).cloned();
        handle.is_some_and(|handle| handle.holds(consumer_id))
    }

    /// (consumers attached, subscriptions open) here.
    pub fn active(&self) -> (usize, usize) {
        let registry = self.registry();
        let subscriptions = registry.subscriptions.values().map(HashMap::len).sum();
        (registry.consumers.len(), subscriptions)
    }

    /// The topic consumer `id` is attached to, if it is attached here.
    pub fn topic_of(&self, consumer_id: u64) -> Option<TopicName> {
        let handle = self.registry().consumers.get(&consumer_id).cloned();
        handle.map(|handle| handle.topic.clone())
    }

    /// Messages of a non-reliable subscription dropped so far (full consumer queues, nobody to
    /// take them); `None` for an unknown or reliable subscription.
    pub fn dropped(&self, topic: &TopicName, subscription: &SubscriptionName) -> Option<u64> {
        let handle = self.find(topic, subscription)?;
        match &*handle.engine() {
            Engine::Live(live) => Some(live.dropped()),
            Engine::Reliable(_) => None,
        }
    }

    /// Stops: ends every consumer stream, stores pending dead letters and checkpoints every
    /// cursor, and waits for the subscriptions' tasks. Consumers must subscribe again after.
    pub async fn shutdown(&self) {
        self.shared.stop.cancel();
        let tasks = std::mem::take(
            &mut *self
                .shared
                .tasks
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for task in tasks {
            if let Err(error) = task.await {
                tracing::warn!(%error, "a subscription task failed");
            }
        }
    }

    /// This node stopped serving `topic`: ends its subscriptions' streams, stops their tasks
    /// without checkpointing (the new owner moves the cursor on) and forgets them and their
    /// consumers, so that serving the topic again reloads the cursor from storage.
    pub fn release_topic(&self, topic: &TopicName) {
        let released: Vec<Arc<SubscriptionHandle>> = {
            let mut registry = self.registry();
            let released: Vec<Arc<SubscriptionHandle>> = registry
                .subscriptions
                .remove(topic)
                .into_iter()
                .flat_map(HashMap::into_values)
                .filter_map(|cell| cell.get().cloned())
                .collect();
            registry
                .consumers
                .retain(|_, handle| handle.topic != *topic);
            released
        };
        for handle in released {
            handle.abandon();
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.shared
            .registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn find(
        &self,
        topic: &TopicName,
        subscription: &SubscriptionName,
    ) -> Option<Arc<SubscriptionHandle>> {
        let cell = self.registry().cell(topic, subscription).cloned()?;
        cell.get().cloned()
    }

    /// The subscription, opened with `kind` if it is not open yet.
    async fn open(
        &self,
        entry: &TopicEntry,
        name: &SubscriptionName,
        kind: SubscriptionType,
    ) -> Result<Arc<SubscriptionHandle>, Status> {
        if self.shared.stop.is_cancelled() {
            return Err(Status::unavailable("the broker is shutting down"));
        }
        let topic = entry.name();
        let (cell, evicted) = {
            let mut registry = self.registry();
            let limit = self.shared.config.max_subscriptions_per_topic;
            let count =
                |registry: &Registry| registry.subscriptions.get(topic).map_or(0, HashMap::len);
            let mut evicted = Vec::new();
            if registry.cell(topic, name).is_none() && count(&registry) >= limit {
                evicted = registry.evict_unused(topic);
                if count(&registry) >= limit {
                    drop(registry);
                    stop_evicted(evicted);
                    return Err(Status::resource_exhausted(format!(
                        "topic {topic} already has {limit} subscriptions in use \
                         (max_subscriptions_per_topic); {name:?} is refused"
                    )));
                }
            }
            let cell = registry
                .subscriptions
                .entry(topic.clone())
                .or_default()
                .entry(name.clone())
                .or_default()
                .clone();
            (cell, evicted)
        };
        stop_evicted(evicted);
        let handle = match cell.get_or_try_init(|| self.start(entry, name, kind)).await {
            Ok(handle) => handle.clone(),
            Err(status) => {
                self.forget_unopened(topic, name, &cell);
                return Err(status);
            }
        };
        let current = self
            .registry()
            .cell(topic, name)
            .is_some_and(|registered| Arc::ptr_eq(registered, &cell));
        if !current {
            // The topic was released while this opened: what it loaded may be stale.
            handle.abandon();
            return Err(Status::unavailable(format!(
                "topic {} is no longer served by this node: look it up again",
                entry.name()
            )));
        }
        Ok(handle)
    }

    /// Forgets `cell` if it is still the entry of `topic` and `name` and nothing opened in it
    /// (its start failed), so a failed start holds no place under the cap.
    fn forget_unopened(&self, topic: &TopicName, name: &SubscriptionName, cell: &SubscriptionCell) {
        let mut registry = self.registry();
        let Some(on_topic) = registry.subscriptions.get_mut(topic) else {
            return;
        };
        let failed = on_topic
            .get(name)
            .is_some_and(|current| Arc::ptr_eq(current, cell) && current.get().is_none());
        if failed {
            on_topic.remove(name);
            if on_topic.is_empty() {
                registry.subscriptions.remove(topic);
            }
        }
    }

    /// Builds a subscription's engine from its durable cursor (reliable) or the topic's
    /// fan-out (live), and starts its task.
    async fn start(
        &self,
        entry: &TopicEntry,
        name: &SubscriptionName,
        kind: SubscriptionType,
    ) -> Result<Arc<SubscriptionHandle>, Status> {
        let shared = &self.shared;
        let topic = entry.name().clone();
        let stop = shared.stop.child_token();
        let task = match (entry.dispatch(), entry.live(), entry.log_stream()) {
            (Dispatch::NonReliable, Some(live), _) => {
                let engine = LiveSubscription::new(kind, &shared.config.subscription);
                let handle = Arc::new(SubscriptionHandle::new(
                    topic,
                    name.clone(),
                    Engine::Live(engine),
                    stop,
                    shared.clock,
                    shared.config.idle_consumer_grace,
                    shared.metrics.topic(entry.name()),
                ));
                // No task: the producers' calls queue into the engine directly.
                let sink: Weak<dyn LiveSink> = Arc::downgrade(&handle) as Weak<dyn LiveSink>;
                live.attach(sink);
                return Ok(handle);
            }
            (Dispatch::Reliable, _, Some(log)) => {
                let writer = match entry.delivery() {
                    TopicDelivery::Log(writer) => Some(writer),
                    TopicDelivery::Live(_) => None,
                };
                let storage = shared.catalog.storage().clone();
                let stream = cursor_stream(&topic, name);
                let rotate = shared.config.cursor_rotate_every;
                let loaded = CursorStore::load(storage.clone(), stream.clone(), rotate)
                    .await
                    .map_err(storage_status)?;
                let (cursor, checkpoint) = match loaded {
                    Some(loaded) => loaded,
                    None => {
                        // New: start at the tail, durably, before any message is missed.
                        let tail = storage.head(log).await.map_err(storage_status)?;
                        let first = Checkpoint::new(None, &tail.next_offset);
                        CursorStore::create(storage.clone(), stream.clone(), rotate, first)
                            .await
                            .map_err(storage_status)?
                    }
                };
                let position = checkpoint.offset().ok_or_else(|| {
                    Status::internal(format!("cursor {stream} holds an invalid position"))
                })?;
                let engine = ReliableSubscription::new(
                    kind,
                    shared.config.subscription.clone(),
                    Arc::new(shared.clock),
                    checkpoint.next.unwrap_or(0),
                );
                let state = ReliableState {
                    engine,
                    positions: Default::default(),
                    read_position: position.clone(),
                    flushed: position,
                    unflushed_acks: 0,
                    dirty_since_ms: None,
                    dead_letters: Vec::new(),
                    follow: Follow::new(writer.is_some()),
                    pump_wake_ms: None,
                };
                let handle = Arc::new(SubscriptionHandle::new(
                    topic,
                    name.clone(),
                    Engine::Reliable(Box::new(state)),
                    stop,
                    shared.clock,
                    shared.config.idle_consumer_grace,
                    shared.metrics.topic(entry.name()),
                ));
                // Before the pump first reads the log from the cursor: what is appended before
                // this is in the log, what is appended after is handed over (or read again).
                if let Some(writer) = writer {
                    writer.follow(Arc::downgrade(&handle) as Weak<dyn AppendedSink>);
                }
                let pump = pump::ReliablePump::new(
                    handle.clone(),
                    storage,
                    cursor,
                    log.clone(),
                    shared.clock,
                    shared.config.clone(),
                );
                (handle, tokio::spawn(pump.run()))
            }
            _ => {
                return Err(Status::internal(format!(
                    "topic {topic} has no delivery path for its dispatch"
                )));
            }
        };
        let (handle, task) = task;
        let mut tasks = shared.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        // Subscriptions closed for lack of use come and go: keep only running tasks.
        tasks.retain(|task| !task.is_finished());
        tasks.push(task);
        Ok(handle)
    }

    /// Acks `offsets` of `topic_name` for `subscription` (Courier's `AckMany`: each as one
    /// `Ack` would).
    ///
    /// Errors: `InvalidArgument` for a bad topic or subscription name or more than
    /// [`MAX_ACK_MANY_OFFSETS`] offsets, `NotFound` for an unknown subscription.
    pub fn ack_many(
        &self,
        topic_name: &str,
        subscription: &str,
        offsets: &[u64],
    ) -> Result<(), Status> {
        // Every offset is settled under one lock of the subscription's engine: an unbounded
        // list would stall its dispatch and acks for as long as it takes.
        if offsets.len() > MAX_ACK_MANY_OFFSETS {
            return Err(Status::invalid_argument(format!(
                "topic_offsets: {} offsets in one AckMany, at most {MAX_ACK_MANY_OFFSETS}",
                offsets.len()
            )));
        }
        let topic = TopicName::new(topic_name).map_err(invalid_argument)?;
        let handle = self.subscription(&topic, subscription)?;
        self.settle(&handle, offsets);
        Ok(())
    }

    fn settle(&self, handle: &SubscriptionHandle, offsets: &[u64]) {
        let settled = handle.ack_many(
            offsets,
            courier_traits::clock::Clock::now_ms(&self.shared.clock),
            self.shared.config.cursor_flush_acks,
        );
        // Duplicates, retries and stale offsets settle nothing: acked stays within delivered.
        if settled > 0 {
            handle.metrics.acked.add(settled);
        }
    }

    /// The subscription `subscription` of `topic`, open on this node.
    fn subscription(
        &self,
        topic: &TopicName,
        subscription: &str,
    ) -> Result<Arc<SubscriptionHandle>, Status> {
        let name = SubscriptionName::new(subscription).map_err(invalid_argument)?;
        self.find(topic, &name).ok_or_else(|| {
            Status::not_found(format!("subscription {name:?} on topic {topic}: not found"))
        })
    }

    /// The subscription an Ack or Nack names.
    fn acked(
        &self,
        msg_id: Option<&MsgId>,
        subscription: &str,
    ) -> Result<(Arc<SubscriptionHandle>, u64), Status> {
        let msg_id = msg_id.ok_or_else(|| Status::invalid_argument("msg_id: missing"))?;
        let topic = TopicName::new(&msg_id.topic_name).map_err(invalid_argument)?;
        Ok((
            self.subscription(&topic, subscription)?,
            msg_id.topic_offset,
        ))
    }
}

/// Stops subscriptions closed for lack of use. Their cursors and dead letters are stored
/// already, so opening them again reads the same cursor at once.
fn stop_evicted(evicted: Vec<Arc<SubscriptionHandle>>) {
    for handle in evicted {
        tracing::debug!(
            topic = %handle.topic, subscription = %handle.name,
            "subscription closed: unused, and its topic is at max_subscriptions_per_topic"
        );
        handle.stop.cancel();
    }
}

/// A refused subscription as a status.
fn subscribe_status(error: SubscribeError) -> Status {
    match error {
        SubscribeError::TypeMismatch { .. } | SubscribeError::ExclusiveHeld { .. } => {
            Status::failed_precondition(error.to_string())
        }
        SubscribeError::UnknownConsumer { .. } => Status::unavailable(error.to_string()),
        SubscribeError::TooManyConsumers { .. } => Status::resource_exhausted(error.to_string()),
        _ => Status::internal(error.to_string()),
    }
}

/// A storage failure as a status: `Unavailable` while it may pass.
fn storage_status(error: StorageError) -> Status {
    if error.is_retryable() {
        Status::unavailable(format!("storage unavailable: {error}"))
    } else if let StorageError::NotFound { .. } = error {
        Status::not_found(error.to_string())
    } else {
        Status::internal(format!("storage: {error}"))
    }
}

fn check_name(field: &'static str, value: &str) -> Result<(), Status> {
    if value.is_empty() || value.len() > MAX_NAME_BYTES {
        return Err(Status::invalid_argument(format!(
            "{field} {value:?}: must be 1 to {MAX_NAME_BYTES} bytes"
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl ConsumerApi for ConsumerService {
    async fn subscribe(
        &self,
        request: Request<ConsumerRequest>,
    ) -> Result<Response<ConsumerResponse>, Status> {
        let request = request.into_inner();
        let topic = TopicName::new(&request.topic_name).map_err(invalid_argument)?;
        let name = SubscriptionName::new(&request.subscription).map_err(invalid_argument)?;
        check_name("consumer_name", &request.consumer_name)?;
        let kind = SubscriptionType::try_from(request.subscription_type).map_err(|_| {
            Status::invalid_argument(format!(
                "subscription_type {}: 0 (Exclusive), 1 (Shared), 2 (Failover) or 3 (KeyShared)",
                request.subscription_type
            ))
        })?;
        if request.key_filters.len() > MAX_KEY_FILTERS {
            return Err(Status::invalid_argument(format!(
                "key_filters: {} given; at most {MAX_KEY_FILTERS}",
                request.key_filters.len()
            )));
        }
        for filter in &request.key_filters {
            check_name("key_filters", filter)?;
        }
        let catalog = &self.shared.catalog;
        let mut entry = catalog.topic(&topic);
        if entry.is_none() {
            // Created through another node since this one last looked?
            catalog
                .refresh()
                .await
                .map_err(|error| Status::unavailable(format!("catalog: {error}")))?;
            entry = catalog.topic(&topic);
        }
        let entry = entry.ok_or_else(|| Status::not_found(format!("topic {topic}: not found")))?;
        let owner = catalog
            .view()
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .owner(&topic);
        if owner != Some(Owner::Here) {
            return Err(Status::unavailable(format!(
                "topic {topic} is not served by this node: look it up again"
            )));
        }
        let handle = self.open(&entry, &name, kind).await?;
        let consumer_id = {
            let registry = self.registry();
            // Ids are random so a stale id from before a restart is unknown, not someone else's.
            std::iter::repeat_with(rand::random::<u64>)
                .find(|id| *id != 0 && !registry.consumers.contains_key(id))
                .unwrap_or_default()
        };
        let attached = handle
            .attach(
                kind,
                consumer_id,
                &request.consumer_name,
                request.key_filters,
                self.shared.config.max_consumers_per_subscription,
            )
            .map_err(subscribe_status)?;
        let (attached, idle) = attached;
        {
            let mut registry = self.registry();
            if !registry.is_current(&handle) {
                // Closed (unused, or its topic released) while this attached: it is stopped.
                return Err(Status::unavailable(format!(
                    "subscription {name:?} on topic {topic} closed meanwhile: subscribe again"
                )));
            }
            registry.consumers.insert(consumer_id, handle.clone());
            for gone in attached.replaced.into_iter().chain(idle) {
                registry.consumers.remove(&gone);
            }
        }
        Ok(Response::new(ConsumerResponse {
            request_id: request.request_id,
            consumer_id,
            consumer_name: request.consumer_name,
        }))
    }

    type ReceiveMessagesStream = MessageStream;

    async fn receive_messages(
        &self,
        request: Request<ReceiveRequest>,
    ) -> Result<Response<MessageStream>, Status> {
        let request = request.into_inner();
        let id = request.consumer_id;
        if self.shared.stop.is_cancelled() {
            return Err(Status::unavailable("the broker is shutting down"));
        }
        let unknown = || {
            Status::unavailable(format!(
                "consumer {id} is not attached here: subscribe again"
            ))
        };
        let handle = self
            .registry()
            .consumers
            .get(&id)
            .cloned()
            .ok_or_else(unknown)?;
        let (generation, cancel) = handle.open_stream(id).map_err(|_| unknown())?;
        Ok(Response::new(receive::message_stream(
            handle,
            id,
            generation,
            cancel,
            request.request_id,
        )))
    }

    async fn ack(&self, request: Request<AckRequest>) -> Result<Response<AckResponse>, Status> {
        let request = request.into_inner();
        let (handle, offset) = self.acked(request.msg_id.as_ref(), &request.subscription_name)?;
        self.settle(&handle, &[offset]);
        Ok(Response::new(AckResponse {
            request_id: request.request_id,
        }))
    }

    async fn nack(&self, request: Request<NackRequest>) -> Result<Response<NackResponse>, Status> {
        let request = request.into_inner();
        let (handle, offset) = self.acked(request.msg_id.as_ref(), &request.subscription_name)?;
        let delay = request.delay_ms.map(Duration::from_millis);
        if handle.nack(offset, delay, request.reason.as_deref().unwrap_or_default()) {
            handle.metrics.nacked.inc();
        }
        Ok(Response::new(NackResponse {
            request_id: request.request_id,
        }))
    }
}
