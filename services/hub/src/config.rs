//! [`HubConfig`]: limits and timings of a hub.

use std::sync::Arc;
use std::time::Duration;

use courier_impls::retry::ExponentialBackoff;
use courier_traits::retry::RetryPolicy;
use courier_traits::storage::StreamStorage;

use crate::channels::ChannelRule;

/// Settings of a [`Hub`](crate::Hub). Defaults follow the spec: 3 min read and write timeouts,
/// 256 frames per client queue, 64 KiB messages.
///
/// Start from [`Default`] and change what you need with the `with_*` methods; the fields are
/// public for reading (new settings may be added, so the struct cannot be built literally).
///
/// ```
/// use std::time::Duration;
/// use courier_hub::HubConfig;
///
/// let config = HubConfig::default()
///     .with_node_id("node-a")
///     .with_read_timeout(Duration::from_secs(60));
/// assert_eq!(config.read_timeout, Duration::from_secs(60));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct HubConfig {
    /// No frame (pongs included) from a client for this long: it is removed.
    pub read_timeout: Duration,
    /// One frame write taking longer than this: the client is removed as slow.
    pub write_timeout: Duration,
    /// How often the hub pings each client (keeps `read_timeout` from firing on idle clients).
    pub ping_interval: Duration,
    /// Frames queued per client before pushes get `SendBufferFull`.
    pub message_buffer_cap: usize,
    /// A client whose queue stays full this long is disconnected as persistently slow.
    pub slow_client_grace: Duration,
    /// Largest frame accepted from or sent to a client.
    pub max_message_bytes: usize,
    /// This node's id in a cluster (topic-safe: letters, digits, `-`, `_`). Random if empty.
    pub node_id: String,
    /// How often a cluster node announces itself; nodes silent for 3 intervals (while this
    /// node's own bus works) are forgotten.
    pub heartbeat_interval: Duration,
    /// Broadcasts kept for re-publishing while the bus is down.
    pub bus_backlog: usize,
    /// How the cluster link waits between bus reconnects.
    pub bus_retry: Arc<dyn RetryPolicy>,
    /// What channels allow, first match wins (see [`ChannelRule`]); none: every channel
    /// allows subscribing, and publishing through the HTTP API only.
    pub channels: Vec<ChannelRule>,
    /// Where channels with a history ([`ChannelRule::history`]) keep it; shared by every
    /// node of a cluster (Redis, Postgres, SQLite ... storages), else recovery on another node
    /// finds nothing.
    pub history_storage: Option<Arc<dyn StreamStorage>>,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            read_timeout: Duration::from_secs(180),
            write_timeout: Duration::from_secs(180),
            ping_interval: Duration::from_secs(30),
            message_buffer_cap: 256,
            slow_client_grace: Duration::from_secs(5),
            max_message_bytes: 64 * 1024,
            node_id: String::new(),
            heartbeat_interval: Duration::from_secs(2),
            bus_backlog: 4096,
            bus_retry: Arc::new(
                ExponentialBackoff::new(Duration::from_millis(100))
                    .cap(Duration::from_secs(5))
                    .unlimited(),
            ),
            channels: Vec::new(),
            history_storage: None,
        }
    }
}

impl HubConfig {
    /// Sets [`read_timeout`](Self::read_timeout).
    pub fn with_read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Sets [`write_timeout`](Self::write_timeout).
    pub fn with_write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Sets [`ping_interval`](Self::ping_interval).
    pub fn with_ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self
    }

    /// Sets [`message_buffer_cap`](Self::message_buffer_cap).
    pub fn with_message_buffer_cap(mut self, frames: usize) -> Self {
        self.message_buffer_cap = frames;
        self
    }

    /// Sets [`slow_client_grace`](Self::slow_client_grace).
    pub fn with_slow_client_grace(mut self, grace: Duration) -> Self {
        self.slow_client_grace = grace;
        self
    }

    /// Sets [`max_message_bytes`](Self::max_message_bytes).
    pub fn with_max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// Sets [`node_id`](Self::node_id).
    pub fn with_node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = id.into();
        self
    }

    /// Sets [`heartbeat_interval`](Self::heartbeat_interval).
    pub fn with_heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// Sets [`bus_backlog`](Self::bus_backlog).
    pub fn with_bus_backlog(mut self, frames: usize) -> Self {
        self.bus_backlog = frames;
        self
    }

    /// Appends a rule to [`channels`](Self::channels).
    pub fn with_channel_rule(mut self, rule: ChannelRule) -> Self {
        self.channels.push(rule);
        self
    }

    /// Sets [`history_storage`](Self::history_storage).
    pub fn with_history_storage(mut self, storage: Arc<dyn StreamStorage>) -> Self {
        self.history_storage = Some(storage);
        self
    }

    /// Sets [`bus_retry`](Self::bus_retry).
    pub fn with_bus_retry(mut self, policy: impl RetryPolicy + 'static) -> Self {
        self.bus_retry = Arc::new(policy);
        self
    }
}

impl std::fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubConfig")
            .field("read_timeout", &self.read_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("ping_interval", &self.ping_interval)
            .field("message_buffer_cap", &self.message_buffer_cap)
            .field("slow_client_grace", &self.slow_client_grace)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("node_id", &self.node_id)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("bus_backlog", &self.bus_backlog)
            .field("channels", &self.channels)
            .field("history_storage", &self.history_storage.is_some())
            .finish_non_exhaustive()
    }
}

/// A random node id: `node-` and 12 hex digits.
pub(crate) fn random_node_id() -> String {
    format!("node-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

/// Checks a node id for use in topic names.
pub(crate) fn validate_node_id(id: &str) -> Result<(), courier_traits::InvalidInput> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(courier_traits::InvalidInput::new(
            "node_id",
            id,
            "use 1 to 64 letters, digits, '-' or '_'",
        ));
    }
    Ok(())
}
