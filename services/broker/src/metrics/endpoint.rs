//! What a scrape reads: the counters, with the gauges set from the node's producers and
//! consumers at that moment. A file of its own because it is the one part of the metrics that
//! depends on the services (the services depend on the counters).

use std::sync::Arc;

use super::counters::BrokerMetrics;
use crate::consumer::ConsumerService;
use crate::producer::ProducerRegistry;

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
