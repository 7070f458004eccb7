//! Prometheus metrics of a broker node, prefixed `courier_broker_`, on the services' shared
//! registry (`courier_impls::metrics`):
//!
//! - per topic: `messages_produced_total`, `messages_delivered_total`, `messages_acked_total`,
//!   `messages_nacked_total`, `messages_redelivered_total`, `messages_dead_lettered_total`
//!   (label `topic`; a partition counts under its base topic);
//! - `producers`, `consumers`, `subscriptions`: what this node holds at scrape time;
//! - `send_seconds`: SendMessage latency (for reliable topics, until the message is stored);
//! - `schema_warnings_total`: messages kept under schema policy `warn` though they failed
//!   their topic's checks ([`crate::schema_registry::topics`]).
//!
//! Cardinality is bounded: the first [`MAX_TOPIC_LABELS`] topics get their own label, later
//! ones count together under `topic="(other)"`, so a client creating topics without end
//! cannot grow the scrape without end.
//!
//! [`MetricsEndpoint`] renders the text format; [`serve`] answers `GET /metrics` with it on a
//! listener of its own.

mod counters;
mod endpoint;
mod http;
mod producers;

pub use counters::{BrokerMetrics, MAX_TOPIC_LABELS, OTHER_TOPICS, TopicMetrics};
pub use endpoint::MetricsEndpoint;
pub use http::serve;
pub use producers::MeteredProducers;

#[cfg(test)]
mod tests;
