//! [`Registry`]: the clients connected to this node, and delivery to them.
//!
//! The one place that knows who is connected here. Connections add and remove themselves;
//! the hub and the cluster deliver through it. It knows nothing of either: what should happen
//! when a client leaves (the cluster tells the other nodes) is a hook set once.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use crate::Frame;
use crate::client::{ClientEntry, CloseReason, Offer};
use crate::locks::{read, write};
use crate::metrics::Metrics;

/// What a broadcast did on this node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BroadcastReport {
    /// Local clients the frame was queued for.
    pub delivered: usize,
    /// Local clients whose queue was full (they miss this frame).
    pub dropped: usize,
    /// Whether the cluster bus accepted it now (false: single node, or kept for re-publishing
    /// while the bus is down).
    pub published: bool,
}

/// Called with a client's id when it leaves this node.
pub(crate) type LeaveHook = Box<dyn Fn(&str) + Send + Sync>;

/// The clients connected to this node.
pub(crate) struct Registry {
    clients: RwLock<HashMap<Arc<str>, Arc<ClientEntry>>>,
    metrics: Arc<Metrics>,
    /// How long a client's queue may stay full before it is evicted.
    slow_client_grace: Duration,
    on_leave: OnceLock<LeaveHook>,
}

impl Registry {
    pub(crate) fn new(metrics: Arc<Metrics>, slow_client_grace: Duration) -> Registry {
        Registry {
            clients: RwLock::new(HashMap::new()),
            metrics,
            slow_client_grace,
            on_leave: OnceLock::new(),
        }
    }

    /// Sets what runs when a client leaves (once; later calls are ignored).
    pub(crate) fn set_leave_hook(&self, hook: LeaveHook) {
        let _ = self.on_leave.set(hook);
    }

    /// Adds `entry`; a connection registered under the same id before is closed as replaced.
    pub(crate) fn insert(&self, entry: Arc<ClientEntry>) {
        let previous = write(&self.clients).insert(entry.id.clone(), entry.clone());
        if let Some(previous) = previous {
            tracing::info!(client = %entry.id, "duplicate registration: closing the older connection");
            previous.disconnect(CloseReason::Replaced);
        } else {
            Metrics::inc(&self.metrics.connections);
        }
        Metrics::inc(&self.metrics.connects_total);
        tracing::debug!(client = %entry.id, conn = entry.conn_id, "client connected");
    }

    /// Removes `entry` if it is still the registered connection for its id, and runs the
    /// leave hook if it was.
    pub(crate) fn unregister(&self, entry: &ClientEntry) {
        let removed = {
            let mut clients = write(&self.clients);
            match clients.get(&entry.id) {
                Some(current) if current.conn_id == entry.conn_id => {
                    clients.remove(&entry.id).is_some()
                }
                _ => false,
            }
        };
        Metrics::inc(&self.metrics.disconnects_total);
        if removed {
            self.metrics.connections.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(client = %entry.id, "client disconnected");
            if let Some(hook) = self.on_leave.get() {
                hook(&entry.id);
            }
        }
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<ClientEntry>> {
        read(&self.clients).get(id).cloned()
    }

    pub(crate) fn len(&self) -> usize {
        read(&self.clients).len()
    }

    /// Every connected client.
    pub(crate) fn entries(&self) -> Vec<Arc<ClientEntry>> {
        read(&self.clients).values().cloned().collect()
    }

    /// Every connected client's id and registration time (ms), for presence snapshots.
    pub(crate) fn snapshot(&self) -> Vec<(String, i64)> {
        read(&self.clients)
            .values()
            .map(|e| (e.id.to_string(), e.since_ms))
            .collect()
    }

    /// Queues a frame for a local client, counting drops and evicting persistently slow ones.
    pub(crate) fn offer(&self, entry: &ClientEntry, frame: Frame) -> Offer {
        let offer = entry.offer(frame, self.slow_client_grace);
        if let Offer::Full { evict } = offer {
            Metrics::inc(&self.metrics.drops);
            if evict && !entry.stop.is_cancelled() {
                tracing::warn!(client = %entry.id, grace = ?self.slow_client_grace, "send buffer full past the grace period: evicting slow client");
                Metrics::inc(&self.metrics.evictions);
                entry.disconnect(CloseReason::Slow);
            }
        }
        offer
    }

    /// Queues `frame` for every local client.
    pub(crate) fn broadcast(&self, frame: &Frame) -> BroadcastReport {
        self.fan_out(self.entries(), frame)
    }

    /// Queues `frame` for each of `entries`.
    pub(crate) fn fan_out(&self, entries: Vec<Arc<ClientEntry>>, frame: &Frame) -> BroadcastReport {
        let mut report = BroadcastReport::default();
        for entry in entries {
            match self.offer(&entry, frame.share()) {
                Offer::Queued => report.delivered += 1,
                Offer::Full { .. } => report.dropped += 1,
                Offer::Gone => {}
            }
        }
        report
    }
}
