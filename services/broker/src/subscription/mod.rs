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

mod config;
mod error;
#[cfg(test)]
mod invariants;
mod key_shared;
mod live;
mod members;
mod reliable;
#[cfg(test)]
mod tests;

pub use config::SubscriptionConfig;
pub use courier_impls::grpc::proto::danube::consumer_request::SubscriptionType;
pub use error::SubscribeError;
pub use live::{LiveSubscription, Offered};
pub use members::Attached;
pub use reliable::{DeadLetter, Delivery, ReliableSubscription};
