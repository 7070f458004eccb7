//! [`Metrics`]: counters of a hub, rendered in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one hub node. Cheap to bump from any task.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Clients connected now.
    pub connections: AtomicU64,
    /// Connections accepted since start.
    pub connects_total: AtomicU64,
    /// Connections ended since start (any reason).
    pub disconnects_total: AtomicU64,
    /// Frames received from clients.
    pub frames_in: AtomicU64,
    /// Frames written to clients.
    pub frames_out: AtomicU64,
    /// Frames not queued because a client's queue was full.
    pub drops: AtomicU64,
    /// Clients disconnected as slow (queue full past the grace period, or a write timeout).
    pub evictions: AtomicU64,
    /// Clients removed for silence past the read timeout.
    pub heartbeat_timeouts: AtomicU64,
    /// Failed bus publishes and subscriptions.
    pub bus_errors: AtomicU64,
    /// Frames published to the cluster bus.
    pub bus_published: AtomicU64,
    /// Frames received from the cluster bus and delivered here.
    pub bus_received: AtomicU64,
    /// Broadcasts dropped because the re-publish backlog was full during a bus outage.
    pub bus_backlog_dropped: AtomicU64,
    /// Second copies of frames from the bus, recognised by envelope id and not delivered
    /// (a publish that failed although the backend stored it, then re-published).
    pub bus_duplicates: AtomicU64,
    /// Presence snapshots asked of another node because its heartbeat's digest disagreed with
    /// what this node knew (the repair of a lost join or leave announcement).
    pub presence_snapshot_requests: AtomicU64,
}

impl Metrics {
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A counter's value.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition of every counter, labelled with the node id.
    pub fn render(&self, node: &str) -> String {
        let rows: [(&str, &str, &str, &AtomicU64); 14] = [
            (
                "courier_hub_connections",
                "gauge",
                "clients connected now",
                &self.connections,
            ),
            (
                "courier_hub_connects_total",
                "counter",
                "connections accepted",
                &self.connects_total,
            ),
            (
                "courier_hub_disconnects_total",
                "counter",
                "connections ended",
                &self.disconnects_total,
            ),
            (
                "courier_hub_frames_in_total",
                "counter",
                "frames received from clients",
                &self.frames_in,
            ),
            (
                "courier_hub_frames_out_total",
                "counter",
                "frames written to clients",
                &self.frames_out,
            ),
            (
                "courier_hub_drops_total",
                "counter",
                "frames refused because a client queue was full",
                &self.drops,
            ),
            (
                "courier_hub_evictions_total",
                "counter",
                "slow clients disconnected",
                &self.evictions,
            ),
            (
                "courier_hub_heartbeat_timeouts_total",
                "counter",
                "clients removed for silence",
                &self.heartbeat_timeouts,
            ),
            (
                "courier_hub_bus_errors_total",
                "counter",
                "failed bus publishes and subscriptions",
                &self.bus_errors,
            ),
            (
                "courier_hub_bus_published_total",
                "counter",
                "frames published to the bus",
                &self.bus_published,
            ),
            (
                "courier_hub_bus_received_total",
                "counter",
                "frames from the bus delivered here",
                &self.bus_received,
            ),
            (
                "courier_hub_bus_backlog_dropped_total",
                "counter",
                "broadcasts lost to a full backlog during a bus outage",
                &self.bus_backlog_dropped,
            ),
            (
                "courier_hub_bus_duplicates_total",
                "counter",
                "second copies of bus frames recognised and not delivered",
                &self.bus_duplicates,
            ),
            (
                "courier_hub_presence_snapshot_requests_total",
                "counter",
                "presence snapshots asked for after a heartbeat digest mismatch",
                &self.presence_snapshot_requests,
            ),
        ];
        let mut out = String::with_capacity(2048);
        for (name, kind, help, counter) in rows {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name}{{node=\"{node}\"}} {}", Metrics::get(counter));
        }
        out
    }
}
