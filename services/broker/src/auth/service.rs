//! The `danube.AuthService`: `Authenticate(api_key)` → a signed token for the key's principal.

use std::sync::Arc;

use courier_impls::grpc::proto::danube::auth_service_server::AuthService;
use courier_impls::grpc::proto::danube::{AuthRequest, AuthResponse};
use tonic::{Request, Response, Status};

use super::guard::{Guard, unix_now};

/// Exchanges API keys for tokens ([`super::token::TokenSigner`]).
#[derive(Clone, Debug)]
pub struct Authenticator {
    guard: Arc<Guard>,
}

impl Authenticator {
    /// Issues tokens with the keys and signer of `guard`.
    pub fn new(guard: Arc<Guard>) -> Authenticator {
        Authenticator { guard }
    }
}

#[tonic::async_trait]
impl AuthService for Authenticator {
    async fn authenticate(
        &self,
        request: Request<AuthRequest>,
    ) -> Result<Response<AuthResponse>, Status> {
        let config = self.guard.config();
        let Some(principal) = config.keys.principal(&request.get_ref().api_key) else {
            tracing::debug!("Authenticate refused: unknown API key");
            return Err(Status::unauthenticated("invalid API key"));
        };
        tracing::debug!(principal = %principal.name, "token issued");
        let token = config.signer.issue(principal, unix_now());
        Ok(Response::new(AuthResponse { token }))
    }
}
