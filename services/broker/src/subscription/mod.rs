//! The subscription engine: who of a subscription's consumers gets each message, and for
//! reliable topics what is in flight, acked, due again or dead (spec §2 "Subscriptions",
//! "Reliable", "Non-reliable").
//!
//! Pure and IO-free: the consumer service feeds it messages (read from the topic log or the
//! live fan-out), opens and closes consumer streams, relays acks and nacks, and calls
//! [`ReliableSubscription::tick`] at [`ReliableSubscription::next_deadline_ms`]; time comes
//! from an injected [`Clock`](courier_traits::clock::Clock), so tests move it by hand.
//!
//! - [`ReliableSubscription`]: at-least-once with an in-flight window, cursor over the
//!   contiguous acked prefix, Nack delays, ack timeouts, redelivery and dead letters.
//! - [`LiveSubscription`]: non-reliable fan-out into bounded per-consumer queues.
//!
//! Both place messages by the subscription's type: Exclusive (one consumer), Shared
//! (round-robin), Failover (the first connected consumer still present) and KeyShared
//! (rendezvous hash of the routing key over the consumers whose `key_filters` accept it).

#[cfg(test)]
mod invariants;
mod key_shared;
mod live;
mod members;
mod reliable;
#[cfg(test)]
mod tests;

use std::time::Duration;

use courier_traits::error::{Classify, ErrorClass};

pub use courier_impls::grpc::proto::danube::consumer_request::SubscriptionType;
pub use live::{LiveSubscription, Offered};
pub use members::Attached;
pub use reliable::{DeadLetter, Delivery, ReliableSubscription};

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

/// Why a consumer could not attach or act.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The subscription exists with another type (`FailedPrecondition`).
    #[error("subscription type {requested:?} does not match the subscription's {existing:?}")]
    TypeMismatch {
        /// The subscription's type.
        existing: SubscriptionType,
        /// The type asked for.
        requested: SubscriptionType,
    },
    /// An Exclusive subscription is held by a consumer of another name
    /// (`FailedPrecondition`).
    #[error("the exclusive subscription is held by consumer {holder:?}")]
    ExclusiveHeld {
        /// The holder's name.
        holder: String,
    },
    /// The consumer id is already attached (a caller bug: ids are random and fresh).
    #[error("consumer id {consumer_id} is already attached")]
    DuplicateId {
        /// The id.
        consumer_id: u64,
    },
    /// No consumer with this id is attached (`Unavailable`: the client subscribes again).
    #[error("consumer {consumer_id} is not attached here")]
    UnknownConsumer {
        /// The id.
        consumer_id: u64,
    },
}

impl Classify for SubscribeError {
    fn class(&self) -> ErrorClass {
        match self {
            SubscribeError::UnknownConsumer { .. } => ErrorClass::TRANSIENT,
            SubscribeError::TypeMismatch { .. }
            | SubscribeError::ExclusiveHeld { .. }
            | SubscribeError::DuplicateId { .. } => ErrorClass::Permanent,
        }
    }
}
