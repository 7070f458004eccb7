//! Courier's `AckBatchService` (`courier_broker.AckBatchService/AckMany`, beside Danube's
//! ConsumerService): the offsets of one call are settled under one lock of their subscription,
//! each exactly as a `danube.ConsumerService/Ack` would settle it. Courier's client sends the
//! acks that queued while its previous call was in flight in one call, instead of one HTTP/2
//! request and answer per message on both sides.

use courier_impls::grpc::proto::courier_broker::ack_batch_service_server::AckBatchService;
use courier_impls::grpc::proto::courier_broker::{AckManyRequest, AckManyResponse};
use tonic::{Request, Response, Status};

use super::ConsumerService;

#[tonic::async_trait]
impl AckBatchService for ConsumerService {
    async fn ack_many(
        &self,
        request: Request<AckManyRequest>,
    ) -> Result<Response<AckManyResponse>, Status> {
        let request = request.into_inner();
        ConsumerService::ack_many(
            self,
            &request.topic_name,
            &request.subscription_name,
            &request.topic_offsets,
        )?;
        Ok(Response::new(AckManyResponse {
            request_id: request.request_id,
        }))
    }
}
