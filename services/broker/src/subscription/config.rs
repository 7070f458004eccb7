//! The limits and delays of a subscription.

use std::time::Duration;

/// The limits and delays of a subscription; the defaults are the spec's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionConfig {
    /// Reliable: messages handed out and not yet acked (or dead-lettered), at most. Default
    /// 1 000.
    pub max_unacked: usize,
    /// Reliable: how long a delivered message may go unacked before it is delivered again.
    /// Default 30 s.
    pub ack_timeout: Duration,
    /// Reliable: the delay before a message nacked without `delay_ms` comes again, doubling
    /// with each failure up to [`max_nack_delay`](Self::max_nack_delay). Default 1 s.
    pub nack_delay: Duration,
    /// Reliable: the longest default Nack delay. Default 60 s.
    pub max_nack_delay: Duration,
    /// Reliable: redeliveries a message gets; the next failure dead-letters it. Default 5.
    pub max_redeliveries: u32,
    /// Non-reliable: messages queued per consumer; more are dropped and counted. Default 1 000.
    pub consumer_queue: usize,
}

impl Default for SubscriptionConfig {
    fn default() -> SubscriptionConfig {
        SubscriptionConfig {
            max_unacked: 1_000,
            ack_timeout: Duration::from_secs(30),
            nack_delay: Duration::from_secs(1),
            max_nack_delay: Duration::from_secs(60),
            max_redeliveries: 5,
            consumer_queue: 1_000,
        }
    }
}
