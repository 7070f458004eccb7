//! Cluster mode: nodes exchange frames and presence over any [`MessageBus`].
//!
//! Topics (under the bus's own prefix):
//! * `broadcast` — every broadcast, tagged with the publishing node; a node skips its own
//!   (it already delivered locally), so each client gets a frame once.
//! * `unicast/<node id>` — the inbox of one node: frames for clients it holds. One
//!   subscription per node, not per client: Redis and etcd buses hold a connection or a watch
//!   per subscription, which would not scale to 10 000 clients.
//! * `presence` — joins, leaves, heartbeats and snapshots, from which every node keeps a
//!   [`Directory`] of who holds which client.
//! * `health` — probe writes of [`Cluster::probe`] (nobody reads them).
//!
//! Bus failures never stop local delivery. Broadcasts the bus refused are kept in a bounded
//! backlog and re-published in order when it answers again; subscriptions are re-established
//! with the retry policy, resuming from the last position on backends that can.
//!
//! Every frame carries an id chosen by its sender ([`envelope`]); receivers deliver each id
//! once ([`delivered`]), so a frame the bus stored although its publish failed, and that was
//! then re-published, still reaches each client once.

mod delivered;
mod directory;
mod envelope;
mod presence;

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use courier_traits::bus::{BusError, Message, MessageBus, MessageId, SubscribeFrom, Topic};
use courier_traits::retry::{RetryContext, RetryDecision, RetryPolicy};
use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::mpsc;
// The runtime's clock (not std's): heartbeats and expiry follow tokio's timers, and tests can
// move it.
use tokio::time::Instant;

use crate::config::HubConfig;
use crate::connection::{ClientEntry, CloseReason};
use crate::hub::HubInner;
use crate::metrics::Metrics;
use crate::{Frame, HubError};
use delivered::Delivered;
use directory::Directory;
use envelope::EnvelopeId;
use presence::{Presence, SNAPSHOT_PART};

struct Topics {
    broadcast: Topic,
    presence: Topic,
    inbox: Topic,
    health: Topic,
}

/// How long one health probe's answer is reused. `/health` needs no key and may be called
/// often; each probe is a write to the bus.
const PROBE_REUSE: Duration = Duration::from_secs(1);

/// A probe in flight or done, shared by every caller that asks meanwhile.
type Probe = Shared<BoxFuture<'static, Result<(), String>>>;

fn inbox_of(node: &str) -> Result<Topic, HubError> {
    Ok(Topic::new(&format!("unicast/{node}"))?)
}

pub(crate) struct Cluster {
    bus: Arc<dyn MessageBus>,
    node_id: Arc<str>,
    topics: Topics,
    directory: Mutex<Directory>,
    healthy: AtomicBool,
    /// When the bus last started working (after an outage, or at start): other nodes' silence
    /// counts from then, not while we could not hear them.
    healthy_since: Mutex<Instant>,
    metrics: Arc<Metrics>,
    retry: Arc<dyn RetryPolicy>,
    heartbeat: Duration,
    /// Random per start of this node: with the counters below, the ids of its frames.
    boot: u64,
    broadcast_seq: AtomicU64,
    unicast_seq: AtomicU64,
    /// Broadcasts waiting to be re-published after a bus failure, and how many.
    backlog_tx: mpsc::Sender<Bytes>,
    backlog_rx: Mutex<Option<mpsc::Receiver<Bytes>>>,
    backlog_len: AtomicUsize,
    /// Presence announcements, published in order by one task so `register` never waits.
    presence_tx: mpsc::Sender<Presence>,
    presence_rx: Mutex<Option<mpsc::Receiver<Presence>>>,
    /// The latest health probe and when it started.
    probe: Mutex<Option<(Instant, Probe)>>,
}

impl Cluster {
    pub(crate) fn new(
        bus: Arc<dyn MessageBus>,
        config: &HubConfig,
        node_id: Arc<str>,
        metrics: Arc<Metrics>,
    ) -> Result<Cluster, HubError> {
        let (backlog_tx, backlog_rx) = mpsc::channel(config.bus_backlog.max(1));
        let (presence_tx, presence_rx) = mpsc::channel(8192);
        Ok(Cluster {
            topics: Topics {
                broadcast: Topic::new("broadcast")?,
                presence: Topic::new("presence")?,
                inbox: inbox_of(&node_id)?,
                health: Topic::new("health")?,
            },
            bus,
            node_id,
            directory: Mutex::new(Directory::default()),
            healthy: AtomicBool::new(true),
            healthy_since: Mutex::new(Instant::now()),
            metrics,
            retry: config.bus_retry.clone(),
            heartbeat: config.heartbeat_interval,
            boot: rand::random(),
            broadcast_seq: AtomicU64::new(0),
            unicast_seq: AtomicU64::new(0),
            backlog_tx,
            backlog_rx: Mutex::new(Some(backlog_rx)),
            backlog_len: AtomicUsize::new(0),
            presence_tx,
            presence_rx: Mutex::new(Some(presence_rx)),
            probe: Mutex::new(None),
        })
    }

    fn next_id(&self, counter: &AtomicU64) -> EnvelopeId {
        EnvelopeId {
            boot: self.boot,
            seq: counter.fetch_add(1, Ordering::Relaxed) + 1,
        }
    }

    pub(crate) fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Asks the bus now whether it works: a small write that must be accepted within
    /// `deadline`. The flag [`healthy`](Self::healthy) only changes when a call fails, and a
    /// frozen backend fails nothing for as long as its client's timeout; this answers within
    /// the deadline. Callers within [`PROBE_REUSE`] of a probe share its answer.
    pub(crate) async fn probe(&self, deadline: Duration) -> bool {
        let (probe, started_here) = {
            let mut slot = lock(&self.probe);
            match &*slot {
                Some((started, probe))
                    if started.elapsed() < PROBE_REUSE || probe.peek().is_none() =>
                {
                    (probe.clone(), false)
                }
                _ => {
                    let bus = self.bus.clone();
                    let topic = self.topics.health.clone();
                    let payload = Bytes::copy_from_slice(self.node_id.as_bytes());
                    let probe = async move {
                        match tokio::time::timeout(deadline, bus.publish(&topic, payload)).await {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err(e)) => Err(e.to_string()),
                            Err(_) => Err(format!("no answer within {deadline:?}")),
                        }
                    }
                    .boxed()
                    .shared();
                    *slot = Some((Instant::now(), probe.clone()));
                    (probe, true)
                }
            }
        };
        let answer = probe.await;
        // One caller records the answer, so one probe counts as one bus error at most.
        if started_here {
            match &answer {
                Ok(()) => self.bus_ok(),
                Err(message) => self.bus_failed(
                    "health probe",
                    &BusError::Unavailable {
                        message: message.clone(),
                        source: None,
                    },
                ),
            }
        }
        answer.is_ok()
    }

    pub(crate) fn remote_count(&self) -> usize {
        lock(&self.directory).remote_count()
    }

    fn bus_ok(&self) {
        if !self.healthy.swap(true, Ordering::Relaxed) {
            *lock(&self.healthy_since) = Instant::now();
            tracing::info!("cluster bus answers again");
        }
    }

    fn bus_failed(&self, what: &str, error: &BusError) {
        Metrics::inc(&self.metrics.bus_errors);
        if self.healthy.swap(false, Ordering::Relaxed) {
            tracing::warn!(error = %error, "cluster bus {what} failed: delivering locally, retrying in the background");
        } else {
            tracing::debug!(error = %error, "cluster bus {what} failed again");
        }
    }

    async fn publish(&self, topic: &Topic, payload: Bytes, what: &str) -> Result<(), BusError> {
        match self.bus.publish(topic, payload).await {
            Ok(_) => {
                self.bus_ok();
                Metrics::inc(&self.metrics.bus_published);
                Ok(())
            }
            Err(e) => {
                self.bus_failed(what, &e);
                Err(e)
            }
        }
    }

    pub(crate) async fn push_remote(
        &self,
        client: &str,
        frame: &Frame,
    ) -> Result<String, HubError> {
        let owner = lock(&self.directory).owner(client).map(str::to_owned);
        let Some(node) = owner else {
            if !self.healthy() {
                // The directory stopped hearing from other nodes when our bus failed: a client
                // that registered elsewhere meanwhile is unknown here, so "not found" would be
                // a guess. A temporary failure is the truth.
                return Err(HubError::Bus(BusError::Unavailable {
                    message: format!(
                        "cannot tell whether another node holds client {client:?} while the bus is down"
                    ),
                    source: None,
                }));
            }
            return Err(HubError::ClientNotFound(client.to_owned()));
        };
        let id = self.next_id(&self.unicast_seq);
        let payload = envelope::encode(&self.node_id, id, Some(client), frame);
        self.publish(&inbox_of(&node)?, payload, "unicast publish")
            .await
            .map_err(HubError::Bus)?;
        Ok(node)
    }

    /// Publishes a broadcast, or keeps it for later when the bus refuses it (or when older
    /// broadcasts are still waiting, so order is kept). True when published now.
    pub(crate) async fn publish_broadcast(&self, frame: &Frame) -> bool {
        // The id is in the bytes the backlog keeps: a re-publish is recognisably the same frame.
        let id = self.next_id(&self.broadcast_seq);
        let payload = envelope::encode(&self.node_id, id, None, frame);
        if self.backlog_len.load(Ordering::Acquire) == 0
            && self
                .publish(&self.topics.broadcast, payload.clone(), "broadcast publish")
                .await
                .is_ok()
        {
            return true;
        }
        self.keep_for_later(payload);
        false
    }

    fn keep_for_later(&self, payload: Bytes) {
        self.backlog_len.fetch_add(1, Ordering::AcqRel);
        if self.backlog_tx.try_send(payload).is_err() {
            self.backlog_len.fetch_sub(1, Ordering::AcqRel);
            Metrics::inc(&self.metrics.bus_backlog_dropped);
            tracing::warn!("bus backlog full: a broadcast will not reach other nodes");
        }
    }

    fn announce(&self, message: Presence) {
        if self.presence_tx.try_send(message).is_err() {
            // Heartbeats carry counts; a node that sees a mismatch asks for a snapshot.
            tracing::debug!("presence queue full: peers will resync from the next heartbeat");
        }
    }

    pub(crate) fn announce_join(&self, entry: &ClientEntry) {
        self.announce(Presence::Join {
            node: self.node_id.to_string(),
            client: entry.id.to_string(),
            since: entry.since_ms,
        });
    }

    pub(crate) fn announce_leave(&self, client: &str) {
        self.announce(Presence::Leave {
            node: self.node_id.to_string(),
            client: client.to_owned(),
        });
    }

    pub(crate) async fn announce_bye(&self) {
        let bye = Presence::Bye {
            node: self.node_id.to_string(),
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            self.bus.publish(&self.topics.presence, bye.encode()),
        )
        .await;
    }

    /// The delay before retry `attempt` of a bus operation (the policy's; its cap when it
    /// gives up, because a server keeps trying).
    fn backoff(&self, attempt: u32, started: Instant) -> Duration {
        let ctx = RetryContext {
            attempt,
            elapsed: started.elapsed(),
            previous_delay: None,
            class: courier_traits::error::ErrorClass::TRANSIENT,
        };
        match self.retry.decide(&ctx) {
            RetryDecision::RetryAfter(delay) => delay,
            RetryDecision::GiveUp(_) => Duration::from_secs(5),
        }
    }
}

/// Subscribes to the cluster topics (waiting for them, so frames published after the hub is
/// built are received) and starts the cluster tasks.
pub(crate) async fn start(hub: &Arc<HubInner>) -> Result<(), HubError> {
    let Some(cluster) = &hub.cluster else {
        return Ok(());
    };
    for (topic, kind) in [
        (cluster.topics.broadcast.clone(), Link::Broadcast),
        (cluster.topics.inbox.clone(), Link::Inbox),
        (cluster.topics.presence.clone(), Link::Presence),
    ] {
        let first = match cluster.bus.subscribe(&topic, SubscribeFrom::Live).await {
            Ok(sub) => Some(sub),
            Err(e) => {
                cluster.bus_failed("subscribe", &e);
                None
            }
        };
        let hub = hub.clone();
        hub.clone()
            .tasks
            .spawn(async move { link(&hub, topic, kind, first).await });
    }
    let presence_rx = lock(&cluster.presence_rx).take();
    if let Some(rx) = presence_rx {
        let hub = hub.clone();
        hub.clone()
            .tasks
            .spawn(async move { publish_presence(&hub, rx).await });
    }
    let backlog_rx = lock(&cluster.backlog_rx).take();
    if let Some(rx) = backlog_rx {
        let hub = hub.clone();
        hub.clone()
            .tasks
            .spawn(async move { republish(&hub, rx).await });
    }
    let heartbeat_hub = hub.clone();
    hub.tasks
        .spawn(async move { heartbeat(&heartbeat_hub).await });
    cluster.announce(Presence::Hello {
        node: cluster.node_id.to_string(),
        target: None,
    });
    Ok(())
}

#[derive(Clone, Copy)]
enum Link {
    Broadcast,
    Inbox,
    Presence,
}

/// Consumes one topic for the life of the hub, re-subscribing after failures.
async fn link(
    hub: &Arc<HubInner>,
    topic: Topic,
    kind: Link,
    mut current: Option<courier_traits::bus::Subscription>,
) {
    let Some(cluster) = &hub.cluster else { return };
    let resume = cluster.bus.capabilities().resume;
    let mut last: Option<courier_traits::bus::Position> = None;
    let mut seen = RecentIds::new(4096);
    let mut delivered = Delivered::new(hub.config.bus_backlog);
    let mut attempt = 0u32;
    let mut failing_since = Instant::now();
    loop {
        let mut sub = match current.take() {
            Some(sub) => sub,
            None => {
                let from = match (&last, resume) {
                    (Some(position), true) => SubscribeFrom::After(position.clone()),
                    _ => SubscribeFrom::Live,
                };
                let result = tokio::select! {
                    () = hub.stop.cancelled() => return,
                    result = cluster.bus.subscribe(&topic, from) => result,
                };
                match result {
                    Ok(sub) => {
                        tracing::info!(topic = %topic, "cluster bus subscription restored");
                        cluster.bus_ok();
                        attempt = 0;
                        sub
                    }
                    Err(BusError::PositionUnavailable { .. }) => {
                        tracing::warn!(topic = %topic, "cannot resume from the last position; going live (frames in the gap are lost)");
                        last = None;
                        continue;
                    }
                    Err(BusError::Closed) => return,
                    Err(e) => {
                        if attempt == 0 {
                            failing_since = Instant::now();
                        }
                        attempt += 1;
                        cluster.bus_failed("subscribe", &e);
                        let delay = cluster.backoff(attempt, failing_since);
                        tokio::select! {
                            () = hub.stop.cancelled() => return,
                            () = tokio::time::sleep(delay) => continue,
                        }
                    }
                }
            }
        };
        loop {
            let item = tokio::select! {
                () = hub.stop.cancelled() => return,
                item = sub.next() => item,
            };
            match item {
                Some(Ok(message)) => {
                    if message.position.is_some() {
                        last = message.position.clone();
                    }
                    if seen.insert(&message.id) {
                        handle(hub, cluster, kind, message, &mut delivered);
                    }
                }
                Some(Err(BusError::Lagged { missed })) => {
                    Metrics::inc(&hub.metrics.bus_errors);
                    tracing::warn!(topic = %topic, missed, "fell behind the cluster bus: frames lost for this node");
                }
                Some(Err(BusError::Closed)) => return,
                Some(Err(e)) => {
                    cluster.bus_failed("subscription", &e);
                    break;
                }
                None => {
                    if hub.stop.is_cancelled() {
                        return;
                    }
                    tracing::warn!(topic = %topic, "cluster bus subscription ended: re-subscribing");
                    break;
                }
            }
        }
    }
}

fn handle(
    hub: &HubInner,
    cluster: &Cluster,
    kind: Link,
    message: Message,
    delivered: &mut Delivered,
) {
    match kind {
        Link::Broadcast | Link::Inbox => {
            let Some(env) = envelope::decode(&message.payload) else {
                tracing::warn!(topic = %message.topic, "undecodable frame on the cluster bus ignored");
                return;
            };
            if env.origin == *cluster.node_id && env.target.is_none() {
                return; // our own broadcast: local clients already have it
            }
            if let Some(id) = env.id
                && !delivered.first_delivery(&env.origin, id)
            {
                Metrics::inc(&hub.metrics.bus_duplicates);
                tracing::debug!(
                    origin = env.origin,
                    seq = id.seq,
                    "second copy of a frame dropped"
                );
                return;
            }
            let Ok(frame) = Frame::new(env.kind, env.payload) else {
                return;
            };
            Metrics::inc(&hub.metrics.bus_received);
            match env.target {
                None => {
                    hub.deliver_local_broadcast(&frame);
                }
                Some(client) => match hub.local(&client) {
                    Some(entry) => {
                        hub.offer(&entry, frame);
                    }
                    None => tracing::debug!(client, "unicast for a client no longer here dropped"),
                },
            }
        }
        Link::Presence => {
            let Ok(presence) = serde_json::from_slice::<Presence>(&message.payload) else {
                tracing::warn!("undecodable presence message ignored");
                return;
            };
            on_presence(hub, cluster, presence);
        }
    }
}

fn on_presence(hub: &HubInner, cluster: &Cluster, presence: Presence) {
    if presence.node() == &*cluster.node_id {
        return;
    }
    let now = Instant::now();
    let mut directory = lock(&cluster.directory);
    match presence {
        Presence::Join {
            node,
            client,
            since,
        } => {
            directory.join(&node, &client, since, now);
            drop(directory);
            // The same id registered elsewhere later than here: this connection is the old one.
            if let Some(entry) = hub.local(&client)
                && (entry.since_ms, &*cluster.node_id) < (since, node.as_str())
            {
                tracing::info!(
                    client,
                    node,
                    "client registered again on another node: closing it here"
                );
                entry.disconnect(CloseReason::Replaced);
            }
        }
        Presence::Leave { node, client } => directory.leave(&node, &client),
        Presence::Alive { node, clients } => {
            if directory.needs_snapshot(&node, clients, now, cluster.heartbeat) {
                drop(directory);
                cluster.announce(Presence::Hello {
                    node: cluster.node_id.to_string(),
                    target: Some(node),
                });
            }
        }
        Presence::Hello { node, target } => {
            directory.seen(&node, now);
            drop(directory);
            if target.is_none() || target.as_deref() == Some(&*cluster.node_id) {
                send_snapshot(hub, cluster);
            }
        }
        Presence::Snapshot {
            node,
            part,
            clients,
        } => {
            directory.snapshot(&node, part == 0, &clients, now);
        }
        Presence::Bye { node } => directory.forget(&node),
    }
}

fn send_snapshot(hub: &HubInner, cluster: &Cluster) {
    let clients = hub.local_snapshot();
    let node = cluster.node_id.to_string();
    if clients.is_empty() {
        cluster.announce(Presence::Snapshot {
            node,
            part: 0,
            clients,
        });
        return;
    }
    for (part, chunk) in clients.chunks(SNAPSHOT_PART).enumerate() {
        cluster.announce(Presence::Snapshot {
            node: node.clone(),
            part,
            clients: chunk.to_vec(),
        });
    }
}

async fn publish_presence(hub: &Arc<HubInner>, mut rx: mpsc::Receiver<Presence>) {
    let Some(cluster) = &hub.cluster else { return };
    loop {
        let message = tokio::select! {
            () = hub.stop.cancelled() => return,
            message = rx.recv() => match message { Some(m) => m, None => return },
        };
        // Presence lost in an outage is repaired by heartbeats and snapshots: no retry here.
        let _ = cluster
            .publish(
                &cluster.topics.presence,
                message.encode(),
                "presence publish",
            )
            .await;
    }
}

/// Re-publishes broadcasts the bus refused, in order, once it answers again.
async fn republish(hub: &Arc<HubInner>, mut rx: mpsc::Receiver<Bytes>) {
    let Some(cluster) = &hub.cluster else { return };
    loop {
        let payload = tokio::select! {
            () = hub.stop.cancelled() => return,
            payload = rx.recv() => match payload { Some(p) => p, None => return },
        };
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            match cluster
                .publish(
                    &cluster.topics.broadcast,
                    payload.clone(),
                    "broadcast re-publish",
                )
                .await
            {
                Ok(()) => break,
                Err(BusError::Closed) => return,
                Err(_) => {
                    attempt += 1;
                    let delay = cluster.backoff(attempt, started);
                    tokio::select! {
                        () = hub.stop.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        cluster.backlog_len.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Announces this node with its client count and forgets silent nodes.
async fn heartbeat(hub: &Arc<HubInner>) {
    let Some(cluster) = &hub.cluster else { return };
    let mut tick = tokio::time::interval(cluster.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = hub.stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let alive = Presence::Alive {
            node: cluster.node_id.to_string(),
            clients: hub.local_snapshot().len(),
        };
        let _ = cluster
            .publish(&cluster.topics.presence, alive.encode(), "heartbeat")
            .await;
        if !cluster.healthy() {
            // Other nodes are silent because we cannot hear them: keep them (pushes to their
            // clients answer "bus unavailable", a temporary failure, not "not found").
            continue;
        }
        let listening_since = *lock(&cluster.healthy_since);
        let gone =
            lock(&cluster.directory).expire(Instant::now(), cluster.heartbeat * 3, listening_since);
        for node in gone {
            tracing::warn!(node, "no heartbeat from node: forgetting its clients");
        }
    }
}

/// Ids of recently seen bus messages, to drop redeliveries after a resume (also of frames
/// from nodes of the version before envelope ids).
struct RecentIds {
    order: VecDeque<MessageId>,
    set: HashSet<MessageId>,
    capacity: usize,
}

impl RecentIds {
    fn new(capacity: usize) -> RecentIds {
        RecentIds {
            order: VecDeque::with_capacity(capacity),
            set: HashSet::with_capacity(capacity),
            capacity,
        }
    }

    /// True when `id` was not seen recently.
    fn insert(&mut self, id: &MessageId) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.order.push_back(id.clone());
        self.set.insert(id.clone());
        true
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
