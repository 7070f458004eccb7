//! The node's counters, gauges and send-latency histogram, and the bounded `topic` label.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use courier_impls::metrics::{Counter, CounterFamily, Gauge, Histogram, Registry};

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
    pub(super) producers: Arc<Gauge>,
    /// Messages kept under schema policy `warn` though they failed their topic's checks.
    pub schema_warnings: Arc<Counter>,
    pub(super) consumers: Arc<Gauge>,
    pub(super) subscriptions: Arc<Gauge>,
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
        let schema_warnings = registry.counter(
            "courier_broker_schema_warnings_total",
            "Messages that failed their topic's schema checks under policy warn (kept).",
        );
        BrokerMetrics {
            registry,
            per_topic,
            topics: Mutex::new(HashMap::new()),
            send_seconds,
            producers,
            consumers,
            subscriptions,
            schema_warnings,
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
