//! The consumer service's settings.

use std::time::Duration;

use crate::subscription::SubscriptionConfig;

/// The consumer service's settings; the defaults are the spec's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// The engine's window, delays and queue sizes.
    pub subscription: SubscriptionConfig,
    /// A moved cursor is checkpointed at most this long after it first moved. Default 1 s.
    pub cursor_flush_interval: Duration,
    /// ... or as soon as this many acks moved it. Default 256.
    pub cursor_flush_acks: u64,
    /// Checkpoints per cursor generation before rotating to a new one. Default 10 000.
    pub cursor_rotate_every: u64,
    /// The longest single wait on a topic log before the subscription's task looks again.
    /// Default 30 s.
    pub storage_wait: Duration,
    /// Records read from a topic log at once, at most. Default 256.
    pub read_batch: usize,
    /// A consumer without an open stream for this long is detached when someone next
    /// subscribes to its subscription (its unacked messages go to the others; health checks
    /// answer `CLOSE` for it from then on). Default 60 s.
    pub idle_consumer_grace: Duration,
    /// Subscriptions one topic (each partition alone) may have on this node. Default 1000.
    /// At the cap, subscriptions nobody uses (no consumer streaming or within
    /// `idle_consumer_grace`) are closed to make room; they reopen at their stored cursor.
    pub max_subscriptions_per_topic: usize,
    /// Consumers one subscription may have attached at once, not counting those whose stream
    /// ended (within their grace). Default 1000.
    pub max_consumers_per_subscription: usize,
}

impl Default for ConsumerConfig {
    fn default() -> ConsumerConfig {
        ConsumerConfig {
            subscription: SubscriptionConfig::default(),
            cursor_flush_interval: Duration::from_secs(1),
            cursor_flush_acks: 256,
            cursor_rotate_every: 10_000,
            storage_wait: Duration::from_secs(30),
            read_batch: 256,
            idle_consumer_grace: Duration::from_secs(60),
            max_subscriptions_per_topic: 1_000,
            max_consumers_per_subscription: 1_000,
        }
    }
}
