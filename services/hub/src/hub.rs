//! [`Hub`]: the registry of connected clients, unicast, broadcast and shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use courier_traits::bus::MessageBus;
use courier_traits::transport::DuplexConnection;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::channels::presence::PresenceBook;
use crate::channels::table::SubscriptionTable;
use crate::channels::{Channels, History, Member, Sequencer};
use crate::client::{CloseReason, Offer};
use crate::client_options::ClientOptions;
use crate::cluster::Cluster;
use crate::config::{HubConfig, random_node_id, validate_node_id};
use crate::connection::{self, Connections};
use crate::dispatcher::Dispatcher;
use crate::error::validate_client_id;
use crate::metrics::Metrics;
use crate::registry::{BroadcastReport, Registry};
use crate::{Frame, HubError};

/// Where a pushed frame went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for a client on this node.
    Local,
    /// Handed to the cluster bus for the node that holds the client.
    Remote {
        /// That node's id.
        node: String,
    },
}

/// A WebSocket hub: holds clients, pushes frames to one (unicast) or all (broadcast), on one
/// node or, with a bus, across a cluster.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use courier_hub::{Frame, Hub, HubConfig};
/// use courier_impls::memory::duplex_pair;
/// use courier_traits::transport::Frame as Wire;
///
/// let hub = Hub::new(None, HubConfig::default()).await?;
/// let (mut client, server_side) = duplex_pair(16);
/// hub.register("alice", server_side)?;
/// hub.push("alice", Frame::text("hi")).await?;
/// assert_eq!(client.receiver.recv().await?, Some(Wire::Text("hi".into())));
/// hub.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
    /// Stops every task when the last handle is dropped without `shutdown`.
    _stop_on_drop: Arc<tokio_util::sync::DropGuard>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("node_id", &self.inner.node_id)
            .field("clients", &self.local_count())
            .finish()
    }
}

/// What the hub's handles share. The cluster, when there is one, is its own owner of what
/// the cluster tasks need; the hub only decides whether to ask it.
struct HubInner {
    config: HubConfig,
    node_id: Arc<str>,
    registry: Arc<Registry>,
    connections: Arc<Connections>,
    channels: Arc<Channels>,
    metrics: Arc<Metrics>,
    cluster: Option<Arc<Cluster>>,
    next_conn: AtomicU64,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Hub {
    /// A hub with the standard dispatcher (`ping`). With `bus`, it joins the cluster on that
    /// bus: subscriptions are live before this returns.
    pub async fn new(bus: Option<Arc<dyn MessageBus>>, config: HubConfig) -> Result<Hub, HubError> {
        Hub::with_dispatcher(bus, config, Dispatcher::standard()).await
    }

    /// A hub whose client messages go to `dispatcher`.
    pub async fn with_dispatcher(
        bus: Option<Arc<dyn MessageBus>>,
        mut config: HubConfig,
        dispatcher: Dispatcher,
    ) -> Result<Hub, HubError> {
        if config.node_id.is_empty() {
            config.node_id = random_node_id();
        }
        validate_node_id(&config.node_id)?;
        if config.history_storage.is_none()
            && let Some(rule) = config.channels.iter().find(|r| r.history.is_some())
        {
            return Err(courier_traits::InvalidInput::new(
                "channels",
                rule.pattern.as_str(),
                "a channel with history needs a history storage (HubConfig::with_history_storage)",
            )
            .into());
        }
        let node_id: Arc<str> = config.node_id.as_str().into();
        let metrics = Arc::new(Metrics::default());
        let stop = CancellationToken::new();
        // Made first, so cluster tasks started below stop if this returns early.
        let stop_on_drop = Arc::new(stop.clone().drop_guard());
        let tasks = TaskTracker::new();
        let registry = Arc::new(Registry::new(metrics.clone(), config.slow_client_grace));
        let subscriptions = Arc::new(SubscriptionTable::default());
        let presence = Arc::new(PresenceBook::new(config.channels.clone(), metrics.clone()));
        let history = config
            .history_storage
            .clone()
            .map(|s| Arc::new(History::new(s)));
        let sequencer = Arc::new(Sequencer::new(
            subscriptions.clone(),
            registry.clone(),
            config.channels.clone(),
            history.clone(),
            stop.clone(),
            tasks.clone(),
        ));
        let cluster = match bus {
            Some(bus) => {
                let (cluster, queues) = Cluster::new(
                    bus,
                    &config,
                    node_id.clone(),
                    metrics.clone(),
                    sequencer.clone(),
                    presence.clone(),
                )?;
                let cluster = Arc::new(cluster);
                registry.set_leave_hook(cluster.leave_hook());
                crate::cluster::start(&cluster, queues, &stop, &tasks).await?;
                Some(cluster)
            }
            None => None,
        };
        let channels = Arc::new(Channels {
            table: subscriptions,
            rules: config.channels.clone(),
            registry: registry.clone(),
            cluster: cluster.clone(),
            history,
            sequencer,
            presence,
            node_id: node_id.clone(),
            max_message_bytes: config.max_message_bytes,
        });
        let connections = Arc::new(Connections {
            config: config.clone(),
            node_id: node_id.clone(),
            registry: registry.clone(),
            dispatcher,
            channels: channels.clone(),
            metrics: metrics.clone(),
            stop: stop.clone(),
            tasks: tasks.clone(),
        });
        let inner = Arc::new(HubInner {
            config,
            node_id,
            registry,
            connections,
            channels,
            metrics,
            cluster,
            next_conn: AtomicU64::new(1),
            stop,
            tasks,
        });
        Ok(Hub {
            inner,
            _stop_on_drop: stop_on_drop,
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// The counters of this node.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The configuration in use.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// Registers a connection as client `id` and starts serving it. A client already
    /// registered under `id` (here or, in a cluster, on another node) is disconnected.
    pub fn register(&self, id: &str, connection: DuplexConnection) -> Result<(), HubError> {
        self.register_with_greeting(id, connection, None)
    }

    /// Like [`register`](Self::register), with a frame the client receives before any other
    /// (the server's `welcome`).
    pub fn register_with_greeting(
        &self,
        id: &str,
        connection: DuplexConnection,
        greeting: Option<Frame>,
    ) -> Result<(), HubError> {
        let options = ClientOptions {
            greeting,
            ..ClientOptions::default()
        };
        self.register_client(id, connection, options)
    }

    /// Like [`register`](Self::register), with per-connection [`ClientOptions`]: a greeting,
    /// the channel grants of its token, compression of large messages.
    pub fn register_client(
        &self,
        id: &str,
        connection: DuplexConnection,
        options: ClientOptions,
    ) -> Result<(), HubError> {
        validate_client_id(id)?;
        let inner = &self.inner;
        if inner.stop.is_cancelled() {
            return Err(HubError::Closed);
        }
        let id: Arc<str> = id.into();
        let conn_id = inner.next_conn.fetch_add(1, Ordering::Relaxed);
        let entry = connection::start(
            &inner.connections,
            id,
            conn_id,
            connection.sender,
            connection.receiver,
            options,
        );
        if let Some(cluster) = &inner.cluster {
            cluster.announce_join(&entry.id, entry.since_ms);
        }
        Ok(())
    }

    /// Sends `frame` to client `id`: here if it is connected here, otherwise through the bus
    /// to the node that holds it.
    ///
    /// Errors: `ClientNotFound`; `SendBufferFull` (the client is behind; it is disconnected if
    /// it stays behind past the grace period); `Bus` when the client is remote and the bus
    /// refused the frame; `FrameTooLarge`; `Closed`.
    pub async fn push(&self, id: &str, mut frame: Frame) -> Result<Delivery, HubError> {
        let inner = &self.inner;
        if inner.stop.is_cancelled() {
            return Err(HubError::Closed);
        }
        self.check_size(&frame)?;
        if let Some(entry) = inner.registry.get(id) {
            return match inner.registry.offer(&entry, frame) {
                Offer::Queued => Ok(Delivery::Local),
                Offer::Full { .. } => Err(HubError::SendBufferFull(id.to_owned())),
                Offer::Gone => Err(HubError::ClientNotFound(id.to_owned())),
            };
        }
        let Some(cluster) = &inner.cluster else {
            frame.acknowledge(Err(HubError::ClientNotFound(id.to_owned())));
            return Err(HubError::ClientNotFound(id.to_owned()));
        };
        match cluster.push_remote(id, &frame).await {
            Ok(node) => {
                frame.acknowledge(Ok(()));
                Ok(Delivery::Remote { node })
            }
            Err(e) => {
                let failed = match &e {
                    HubError::ClientNotFound(_) => HubError::ClientNotFound(id.to_owned()),
                    _ => HubError::NotDelivered(id.to_owned()),
                };
                frame.acknowledge(Err(failed));
                Err(e)
            }
        }
    }

    /// Sends `frame` to every client on every node, exactly once each. Local clients get it
    /// even when the bus is down; the frame is then kept (bounded) and published when the bus
    /// is back. Acks are not supported for broadcasts (a requested ack resolves `Ok` once
    /// local delivery was attempted).
    pub async fn broadcast(&self, mut frame: Frame) -> Result<BroadcastReport, HubError> {
        let inner = &self.inner;
        if inner.stop.is_cancelled() {
            return Err(HubError::Closed);
        }
        self.check_size(&frame)?;
        let mut report = inner.registry.broadcast(&frame);
        frame.acknowledge(Ok(()));
        if let Some(cluster) = &inner.cluster {
            report.published = cluster.publish_broadcast(&frame).await;
        }
        Ok(report)
    }

    /// Publishes `data` to `channel`: every connection subscribed to it (by name or a
    /// matching pattern), on every node, receives one `publication` message. Local
    /// subscribers get it even when the bus is down (it is then kept, bounded, for
    /// re-publishing, as broadcasts are).
    ///
    /// Errors: `InvalidInput` (not a channel name), `FrameTooLarge`, `Closed`.
    pub async fn publish(
        &self,
        channel: &str,
        data: &serde_json::Value,
    ) -> Result<BroadcastReport, HubError> {
        if self.inner.stop.is_cancelled() {
            return Err(HubError::Closed);
        }
        self.inner.channels.publish(channel, data).await
    }

    /// Who is subscribed (by its exact name) to `channel`, whose rule must ask for presence:
    /// clients here and, in a cluster, on other nodes as this node last heard (see the
    /// bound in the README's hub section).
    pub fn presence(&self, channel: &str) -> Result<Vec<Member>, HubError> {
        self.inner.channels.members(channel)
    }

    /// Clients connected to this node.
    pub fn local_count(&self) -> usize {
        self.inner.registry.len()
    }

    /// Clients connected across the cluster as far as this node knows (the local count
    /// without a cluster).
    pub fn client_count(&self) -> usize {
        let local = self.local_count();
        match &self.inner.cluster {
            Some(cluster) => local + cluster.remote_count(),
            None => local,
        }
    }

    /// Whether client `id` is connected to this node.
    pub fn is_local(&self, id: &str) -> bool {
        self.inner.registry.get(id).is_some()
    }

    /// `None` without a cluster, otherwise whether the bus answered last time it was used.
    pub fn bus_healthy(&self) -> Option<bool> {
        self.inner.cluster.as_ref().map(|c| c.healthy())
    }

    /// `None` without a cluster, otherwise whether the bus accepts a small write within
    /// `deadline` now (a frozen backend answers nothing, so only a deadline tells). Answers
    /// are reused for a second, so frequent health checks cost one bus write a second. The
    /// answer also updates [`bus_healthy`](Self::bus_healthy).
    pub async fn check_bus(&self, deadline: std::time::Duration) -> Option<bool> {
        match &self.inner.cluster {
            Some(cluster) => Some(cluster.probe(deadline).await),
            None => None,
        }
    }

    /// Disconnects every client (close 1001), leaves the cluster and waits for every task.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        if let Some(cluster) = &inner.cluster {
            cluster.announce_bye().await;
        }
        for entry in inner.registry.entries() {
            entry.disconnect(CloseReason::Shutdown);
        }
        inner.stop.cancel();
        inner.tasks.close();
        inner.tasks.wait().await;
    }

    fn check_size(&self, frame: &Frame) -> Result<(), HubError> {
        let limit = self.inner.config.max_message_bytes;
        if frame.payload().len() > limit {
            return Err(HubError::FrameTooLarge {
                size: frame.payload().len(),
                limit,
            });
        }
        Ok(())
    }
}
