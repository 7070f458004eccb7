//! Prometheus metrics of a broker node, prefixed `courier_broker_`, on the services' shared
//! registry (`courier_impls::metrics`):
//!
//! - per topic: `messages_produced_total`, `messages_delivered_total`, `messages_acked_total`,
//!   `messages_nacked_total`, `messages_redelivered_total`, `messages_dead_lettered_total`
//!   (label `topic`; a partition counts under its base topic);
//! - `producers`, `consumers`, `subscriptions`: what this node holds at scrape time;
//! - `send_seconds`: SendMessage latency (for reliable topics, until the message is stored).
//!
//! Cardinality is bounded: the first [`MAX_TOPIC_LABELS`] topics get their own label, later
//! ones count together under `topic="(other)"`, so a client creating topics without end
//! cannot grow the scrape without end.
//!
//! [`MetricsEndpoint`] renders the text format; [`serve`] answers `GET /metrics` with it on a
//! listener of its own.

mod http;
mod producers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use courier_impls::metrics::{Counter, CounterFamily, Gauge, Histogram, Registry};

pub use http::serve;
pub use producers::MeteredProducers;

use crate::consumer::ConsumerService;
use crate::producer::ProducerRegistry;
use crate::topic::TopicName;

/// Topics with a label of their own; the rest share [`OTHER_TOPICS`].
pub const MAX_TOPIC_LABELS: usize = 256;
/// The `topic` label of topics past [`MAX_TOPIC_LABELS`] (no topic name has parentheses).
pub const OTHER_TOPICS: &str = "(other)";
/// SendMessage latency buckets: 0.5 ms to the client's default 10 s deadline.
const SEND_SECONDS_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// One topic's counters, resolved once (recording is then atomics only).
#[derive(Debug)]
pub struct TopicMetrics {
    /// Messages accepted by SendMessage (stored, for reliable topics).
    pub produced: Arc<Counter>,
    /// Messages sent on consumer streams, redeliveries included.
    pub delivered: Arc<Counter>,
    /// Acks received.
    pub acked: Arc<Counter>,
    /// Nacks received.
    pub nacked: Arc<Counter>,
    /// Deliveries of a message delivered before and not acked (after a Nack, an ack timeout
    /// or a consumer that went away).
    pub redelivered: Arc<Counter>,
    /// Messages stored in a dead-letter stream.
    pub dead_lettered: Arc<Counter>,
}

/// The counters of one node; cheap to share (`Arc`).
#[derive(Debug)]
pub struct BrokerMetrics {
    registry: Registry,
    per_topic: [Arc<CounterFamily>; 6],
    topics: Mutex<HashMap<String, Arc<TopicMetrics>>>,
    send_seconds: Arc<Histogram>,
    producers: Arc<Gauge>,
    consumers: Arc<Gauge>,
    subscriptions: Arc<Gauge>,
}

impl Default for BrokerMetrics {
    fn default() -> BrokerMetrics {
        BrokerMetrics::new()
    }
}

impl BrokerMetrics {
    /// Every metric at zero.
    pub fn new() -> BrokerMetrics {
        let registry = Registry::new();
        let family = |name: &str, help: &str| {
            registry.counter_family(&format!("courier_broker_{name}"), help, &["topic"])
        };
        let per_topic = [
            family(
                "messages_produced_total",
                "Messages accepted by SendMessage (stored, on reliable topics).",
            ),
            family(
                "messages_delivered_total",
                "Messages sent to consumers, redeliveries included.",
            ),
            family("messages_acked_total", "Acks received."),
            family("messages_nacked_total", "Nacks received."),
            family(
                "messages_redelivered_total",
                "Deliveries of messages delivered before and not acked.",
            ),
            family(
                "messages_dead_lettered_total",
                "Messages moved to a dead-letter stream.",
            ),
        ];
        let send_seconds = registry.histogram(
            "courier_broker_send_seconds",
            "SendMessage latency in seconds (reliable: until stored).",
            &SEND_SECONDS_BUCKETS,
        );
        let producers = registry.gauge("courier_broker_producers", "Producers held.");
        let consumers = registry.gauge("courier_broker_consumers", "Consumers attached.");
        let subscriptions = registry.gauge("courier_broker_subscriptions", "Subscriptions open.");
        BrokerMetrics {
            registry,
            per_topic,
            topics: Mutex::new(HashMap::new()),
            send_seconds,
            producers,
            consumers,
            subscriptions,
        }
    }

    /// The counters of `topic` (a partition's are its base topic's).
    pub fn topic(&self, topic: &TopicName) -> Arc<TopicMetrics> {
        let base = topic.as_partition().map(|(base, _)| base);
        let name = base.as_ref().unwrap_or(topic).as_str();
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(metrics) = topics.get(name) {
            return metrics.clone();
        }
        let label = if topics.len() < MAX_TOPIC_LABELS {
            name
        } else {
            OTHER_TOPICS
        };
        let [
            produced,
            delivered,
            acked,
            nacked,
            redelivered,
            dead_lettered,
        ] = self
            .per_topic
            .each_ref()
            .map(|family| family.with(&[label]));
        let metrics = Arc::new(TopicMetrics {
            produced,
            delivered,
            acked,
            nacked,
            redelivered,
            dead_lettered,
        });
        if label != OTHER_TOPICS {
            topics.insert(name.to_owned(), metrics.clone());
        }
        metrics
    }

    /// Records one SendMessage answered after `latency`.
    pub fn sent(&self, latency: Duration) {
        self.send_seconds.observe(latency.as_secs_f64());
    }

    /// Every metric in the text exposition format, the gauges as last set.
    pub fn render(&self) -> String {
        self.registry.render()
    }
}

/// What a scrape reads: the node's counters, and its producers and consumers for the gauges.
#[derive(Clone, Debug)]
pub struct MetricsEndpoint {
    metrics: Arc<BrokerMetrics>,
    producers: Arc<ProducerRegistry>,
    consumers: ConsumerService,
}

impl MetricsEndpoint {
    /// The endpoint of a node.
    pub fn new(
        metrics: Arc<BrokerMetrics>,
        producers: Arc<ProducerRegistry>,
        consumers: ConsumerService,
    ) -> MetricsEndpoint {
        MetricsEndpoint {
            metrics,
            producers,
            consumers,
        }
    }

    /// The counters.
    pub fn metrics(&self) -> &Arc<BrokerMetrics> {
        &self.metrics
    }

    /// Every metric now, in the text exposition format.
    pub fn render(&self) -> String {
        let (consumers, subscriptions) = self.consumers.active();
        let metrics = &self.metrics;
        metrics.producers.set(gauge(self.producers.len()));
        metrics.consumers.set(gauge(consumers));
        metrics.subscriptions.set(gauge(subscriptions));
        metrics.render()
    }
}

fn gauge(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
