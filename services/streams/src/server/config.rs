//! [`ServerConfig`]: timings and limits of a [`StreamsServer`](super::StreamsServer).

use std::time::Duration;

use courier_traits::storage::ReadLimits;

use super::subscriptions::SubscriptionSettings;

/// How long a long-lived SSE response lasts before the server ends it (clients reconnect).
const DEFAULT_RECONNECT_INTERVAL: Duration = Duration::from_secs(60);

/// Settings of a [`StreamsServer`](super::StreamsServer).
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// How long a long-poll waits for data before answering 204 (also the SSE keep-alive period).
    pub long_poll_timeout: Duration,
    /// How long an SSE response lasts before the server ends it and the client reconnects.
    pub sse_reconnect_interval: Duration,
    /// Largest request body accepted; larger appends get 413.
    pub max_append_bytes: usize,
    /// How much one read response carries at most (larger ranges are paged by the client).
    pub read_limits: ReadLimits,
    /// The reserved subscription APIs (`{root}/__ds/...`), off when `None` (the default).
    pub subscriptions: Option<SubscriptionSettings>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            long_poll_timeout: Duration::from_secs(30),
            sse_reconnect_interval: DEFAULT_RECONNECT_INTERVAL,
            max_append_bytes: 32 << 20,
            read_limits: ReadLimits::default(),
            subscriptions: None,
        }
    }
}
