//! [`AuthLayer`]: the tower layer in front of the broker's router that holds every RPC but
//! `Authenticate` to the [`Guard`]'s check, answering refusals as gRPC statuses.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{Layer, Service};

use super::guard::{AUTHENTICATE_PATH, Guard};

/// Wraps the router in [`Authorize`]; with no guard (auth mode `none`) every call passes.
#[derive(Clone, Debug, Default)]
pub struct AuthLayer {
    guard: Option<Arc<Guard>>,
}

impl AuthLayer {
    /// A layer checking with `guard`, or passing everything for `None`.
    pub fn new(guard: Option<Arc<Guard>>) -> AuthLayer {
        AuthLayer { guard }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Authorize<S> {
        Authorize {
            inner,
            guard: self.guard.clone(),
        }
    }
}

/// The service [`AuthLayer`] makes. An allowed call carries its
/// [`Principal`](super::Principal) in the request's extensions.
#[derive(Clone, Debug)]
pub struct Authorize<S> {
    inner: S,
    guard: Option<Arc<Guard>>,
}

impl<S, B> Service<http::Request<B>> for Authorize<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if let Some(guard) = &self.guard
            && request.uri().path() != AUTHENTICATE_PATH
        {
            match guard.check(request.uri().path(), request.headers()) {
                Ok(principal) => {
                    request.extensions_mut().insert(principal);
                }
                Err(status) => {
                    tracing::debug!(
                        path = %request.uri().path(),
                        code = ?status.code(),
                        reason = %status.message(),
                        "call refused"
                    );
                    return Box::pin(std::future::ready(Ok(status.into_http())));
                }
            }
        }
        Box::pin(self.inner.call(request))
    }
}
