//! [`Cluster`]: this node's side of cluster mode, owned by the hub and shared with the cluster
//! tasks: the bus and its health, the directory of remote clients, and the frames this node
//! sends to other nodes.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use courier_traits::bus::{BusError, MessageBus, Topic};
use courier_traits::retry::{RetryContext, RetryDecision, RetryPolicy};
use tokio::sync::mpsc;
// The runtime's clock (not std's): heartbeats and expiry follow tokio's timers, and tests can
// move it.
use tokio::time::Instant;

use super::directory::Directory;
use super::envelope::{self, EnvelopeId};
use super::health::BusHealth;
use super::presence::{Announcer, Presence};
use crate::channels::Sequencer;
use crate::channels::presence::PresenceBook;
use crate::channels::table::SubscriptionTable;
use crate::config::HubConfig;
use crate::locks::lock;
use crate::metrics::Metrics;
use crate::registry::{LeaveHook, Registry};
use crate::{Frame, HubError};

pub(super) struct Topics {
    pub(super) broadcast: Topic,
    pub(super) presence: Topic,
    pub(super) inbox: Topic,
    health: Topic,
}

fn inbox_of(node: &str) -> Result<Topic, HubError> {
    Ok(Topic::new(&format!("unicast/{node}"))?)
}

/// The queues the cluster tasks consume (see `tasks::start`).
pub(crate) struct Queues {
    pub(crate) presence: mpsc::Receiver<Presence>,
    pub(crate) backlog: mpsc::Receiver<Bytes>,
}

pub(crate) struct Cluster {
    pub(super) bus: Arc<dyn MessageBus>,
    pub(super) node_id: Arc<str>,
    pub(super) topics: Topics,
    /// This node's clients: where frames from other nodes are delivered.
    pub(super) registry: Arc<Registry>,
    /// Their channel subscriptions: where publications from other nodes go.
    pub(super) subscriptions: Arc<SubscriptionTable>,
    /// Puts history channels' publications from other nodes in stream order.
    pub(super) sequencer: Arc<Sequencer>,
    /// Channel presence: which channels track it, and other nodes' members.
    pub(crate) channel_presence: Arc<PresenceBook>,
    pub(super) directory: Mutex<Directory>,
    pub(super) health: BusHealth,
    pub(super) metrics: Arc<Metrics>,
    pub(super) announcer: Announcer,
    retry: Arc<dyn RetryPolicy>,
    pub(super) heartbeat: Duration,
    /// Broadcasts kept for re-publishing while the bus is down (also sizes the receivers'
    /// duplicate windows).
    pub(super) bus_backlog: usize,
    /// Random per start of this node: with the counters below, the ids of its frames.
    boot: u64,
    broadcast_seq: AtomicU64,
    unicast_seq: AtomicU64,
    /// Broadcasts waiting to be re-published after a bus failure, and how many.
    backlog_tx: mpsc::Sender<Bytes>,
    backlog_len: AtomicUsize,
}

impl Cluster {
    pub(crate) fn new(
        bus: Arc<dyn MessageBus>,
        config: &HubConfig,
        node_id: Arc<str>,
        metrics: Arc<Metrics>,
        sequencer: Arc<Sequencer>,
        channel_presence: Arc<PresenceBook>,
    ) -> Result<(Cluster, Queues), HubError> {
        let (backlog_tx, backlog) = mpsc::channel(config.bus_backlog.max(1));
        let (announcer, presence) = Announcer::new(node_id.clone());
        let cluster = Cluster {
            topics: Topics {
                broadcast: Topic::new("broadcast")?,
                presence: Topic::new("presence")?,
                inbox: inbox_of(&node_id)?,
                health: Topic::new("health")?,
            },
            bus,
            node_id,
            registry: sequencer.registry.clone(),
            subscriptions: sequencer.table.clone(),
            sequencer,
            channel_presence,
            directory: Mutex::new(Directory::default()),
            health: BusHealth::new(metrics.clone()),
            metrics,
            announcer,
            retry: config.bus_retry.clone(),
            heartbeat: config.heartbeat_interval,
            bus_backlog: config.bus_backlog,
            boot: rand::random(),
            broadcast_seq: AtomicU64::new(0),
            unicast_seq: AtomicU64::new(0),
            backlog_tx,
            backlog_len: AtomicUsize::new(0),
        };
        Ok((cluster, Queues { presence, backlog }))
    }

    /// Tells the other nodes that `client` registered here at `since` (ms).
    pub(crate) fn announce_join(&self, client: &str, since: i64) {
        self.announcer.join(client, since);
    }

    /// Tells the other nodes that `client` joined (or left) presence channel `channel` here.
    pub(crate) fn announce_channel(&self, joined: bool, channel: &str, client: &str) {
        self.announcer.channel(joined, channel, client);
    }

    /// This node's presence channel members.
    pub(super) fn local_channel_members(&self) -> Vec<(String, String)> {
        self.subscriptions
            .exact_pairs(|channel| self.channel_presence.tracks(channel))
    }

    /// The digest of this node's channel presence, for heartbeats.
    pub(super) fn channel_presence_digest(&self) -> u64 {
        let members = self.local_channel_members();
        crate::channels::presence::digest(members.iter().map(|(c, k)| (c.as_str(), k.as_str())))
    }

    /// Tells local subscribers about presence changes on other nodes (already in the book),
    /// only those that change whether the client is anywhere: a join while it is here or on a
    /// third node, or a leave of a node it already reconnected from, says nothing.
    pub(super) fn deliver_presence_changes(&self, changes: Vec<crate::channels::presence::Change>) {
        for change in changes {
            let (channel, client) = (&change.channel, &change.client);
            let remote = self.channel_presence.nodes_holding(channel, client);
            if self.subscriptions.holds(channel, client) || remote != usize::from(change.joined) {
                continue;
            }
            let frame =
                crate::channels::presence_event(change.joined, &change.channel, &change.client);
            crate::channels::deliver_local(
                &self.subscriptions,
                &self.registry,
                &change.channel,
                &frame,
            );
        }
    }

    /// Forgets a node's channel presence (it left or fell silent): its members leave.
    pub(super) fn forget_channel_presence(&self, node: &str) {
        let changes = self.channel_presence.forget(node);
        self.deliver_presence_changes(changes);
    }

    /// Whether the bus answered last time it was used.
    pub(crate) fn healthy(&self) -> bool {
        self.health.healthy()
    }

    /// What the registry runs when a client leaves: tell the other nodes.
    pub(crate) fn leave_hook(&self) -> LeaveHook {
        let announcer = self.announcer.clone();
        Box::new(move |client| announcer.leave(client))
    }

    fn next_id(&self, counter: &AtomicU64) -> EnvelopeId {
        EnvelopeId {
            boot: self.boot,
            seq: counter.fetch_add(1, Ordering::Relaxed) + 1,
        }
    }

    /// See [`BusHealth::probe`].
    pub(crate) async fn probe(&self, deadline: Duration) -> bool {
        let payload = Bytes::copy_from_slice(self.node_id.as_bytes());
        self.health
            .probe(&self.bus, &self.topics.health, payload, deadline)
            .await
    }

    pub(crate) fn remote_count(&self) -> usize {
        lock(&self.directory).remote_count()
    }

    /// Publishes, recording the outcome in the bus health and metrics.
    pub(super) async fn publish(
        &self,
        topic: &Topic,
        payload: Bytes,
        what: &str,
    ) -> Result<(), BusError> {
        match self.bus.publish(topic, payload).await {
            Ok(_) => {
                self.health.ok();
                Metrics::inc(&self.metrics.bus_published);
                Ok(())
            }
            Err(e) => {
                self.health.failed(what, &e);
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
            if !self.health.healthy() {
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
        self.publish_in_order(payload).await
    }

    /// Publishes a channel publication like a broadcast (same topic, order and backlog).
    pub(crate) async fn publish_channel(&self, channel: &str, frame: &Frame) -> bool {
        let id = self.next_id(&self.broadcast_seq);
        let payload = envelope::encode_channel(&self.node_id, id, channel, frame);
        self.publish_in_order(payload).await
    }

    async fn publish_in_order(&self, payload: Bytes) -> bool {
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

    /// A kept broadcast was re-published.
    pub(super) fn backlog_sent(&self) {
        self.backlog_len.fetch_sub(1, Ordering::AcqRel);
    }

    /// Tells the other nodes this node is leaving (waits for the bus at most 2 s).
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
    pub(super) fn backoff(&self, attempt: u32, started: Instant) -> Duration {
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
