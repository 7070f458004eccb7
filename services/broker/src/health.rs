//! The `danube.HealthCheck` service (spec §1 rule 6): `OK` while this node holds the
//! producer or consumer, `CLOSE` otherwise, so the client re-creates or resubscribes.

use std::sync::Arc;

use courier_impls::grpc::proto::danube::health_check_request::ClientType;
use courier_impls::grpc::proto::danube::health_check_response::ClientStatus;
use courier_impls::grpc::proto::danube::health_check_server::HealthCheck;
use courier_impls::grpc::proto::danube::{HealthCheckRequest, HealthCheckResponse};
use tonic::{Request, Response, Status};

/// Which producers and consumers this node holds. The broker's producer and consumer
/// registries implement it.
pub trait ClientView: Send + Sync + 'static {
    /// Whether this node holds producer `id`.
    fn holds_producer(&self, id: u64) -> bool;
    /// Whether this node holds consumer `id`.
    fn holds_consumer(&self, id: u64) -> bool;
}

/// Answers health checks from a [`ClientView`].
#[derive(Debug)]
pub struct HealthService<C> {
    clients: Arc<C>,
}

impl<C: ClientView> HealthService<C> {
    /// Health checks answered from `clients`.
    pub fn new(clients: Arc<C>) -> HealthService<C> {
        HealthService { clients }
    }

    /// The status for client `id` of type `client` (the raw enum value off the wire).
    ///
    /// Errors: `InvalidArgument` for a client type that is neither producer nor consumer.
    pub fn status(&self, client: i32, id: u64) -> Result<ClientStatus, Status> {
        let held = match ClientType::try_from(client) {
            Ok(ClientType::Producer) => self.clients.holds_producer(id),
            Ok(ClientType::Consumer) => self.clients.holds_consumer(id),
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "invalid client {client}: 0 (producer) or 1 (consumer)"
                )));
            }
        };
        Ok(if held {
            ClientStatus::Ok
        } else {
            ClientStatus::Close
        })
    }
}

#[tonic::async_trait]
impl<C: ClientView> HealthCheck for HealthService<C> {
    async fn health_check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let request = request.into_inner();
        let status = self.status(request.client, request.id)?;
        Ok(Response::new(HealthCheckResponse {
            status: status.into(),
        }))
    }
}
