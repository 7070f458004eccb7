//! [`MeteredProducers`]: any `ProducerService` with SendMessage counted per topic and timed.

use std::sync::Arc;

use courier_impls::grpc::proto::danube::producer_service_server::ProducerService;
use courier_impls::grpc::proto::danube::{
    MessageResponse, ProducerRequest, ProducerResponse, StreamMessage,
};
use tokio::time::Instant;
use tonic::{Request, Response, Status};

use super::BrokerMetrics;
use crate::topic::TopicName;

/// Wraps the node's producer service (gated or not): an accepted message counts as produced
/// on its topic, and every answer's latency goes to the send histogram.
#[derive(Debug)]
pub struct MeteredProducers<P> {
    inner: P,
    metrics: Arc<BrokerMetrics>,
}

impl<P> MeteredProducers<P> {
    /// Counts what `inner` accepts into `metrics`.
    pub fn new(inner: P, metrics: Arc<BrokerMetrics>) -> MeteredProducers<P> {
        MeteredProducers { inner, metrics }
    }
}

#[tonic::async_trait]
impl<P: ProducerService> ProducerService for MeteredProducers<P> {
    async fn create_producer(
        &self,
        request: Request<ProducerRequest>,
    ) -> Result<Response<ProducerResponse>, Status> {
        self.inner.create_producer(request).await
    }

    async fn send_message(
        &self,
        request: Request<StreamMessage>,
    ) -> Result<Response<MessageResponse>, Status> {
        let topic = request
            .get_ref()
            .msg_id
            .as_ref()
            .and_then(|id| TopicName::new(&id.topic_name).ok());
        let started = Instant::now();
        let answer = self.inner.send_message(request).await;
        self.metrics.sent(started.elapsed());
        if let (Ok(_), Some(topic)) = (&answer, topic) {
            self.metrics.topic(&topic).produced.inc();
        }
        answer
    }
}
