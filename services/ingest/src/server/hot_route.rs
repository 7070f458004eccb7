//! [`IngestService`]: the service [`IngestServer::serve`](super::IngestServer::serve) runs.
//! `POST /v1/events/batch` goes straight to its handler, under the same edge work as the
//! router's layers (request id, CORS, the request's count and log line); every other request
//! goes through the axum router.
//!
//! Why: the router costs a dozen or so allocations and dynamic calls per request (the boxed
//! clones of the route's and the method router's services, a boxed future per `from_fn`
//! layer, each layer's `Next`), which at a batch of 50 events was a measurable part of an
//! event's cost beyond the storage's. The answers are the router's, byte for byte: the same
//! handler and the same header steps in the same order (`tests/server_router.rs` compares
//! them). The streams server does the same for its appends and reads
//! (`courier-streams`' `hot_routes`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::future::RouteFuture;
use courier_impls::http_server::{self, RequestBody};
use futures::future::Either;
use http::Method;
use tokio::net::TcpListener;
use tower::{Service, ServiceExt as _};

use super::router::{IngestServer, IngestState, answer_batch};

impl IngestServer {
    /// The service [`IngestServer::serve`] runs: the [`router`](IngestServer::router)'s answers,
    /// with `POST /v1/events/batch` answered without going through the router (see
    /// [`IngestService`]).
    pub fn service(&self) -> IngestService {
        IngestService::new(Arc::clone(&self.state), self.router())
    }

    /// Serves on `listener` until `shutdown` completes, then waits for open requests.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let admin = self.admin.clone();
        // Each connection gets a clone of the service.
        let service = self
            .service()
            .map_request(|request: Request<RequestBody>| request.map(axum::body::Body::new));
        http_server::serve(listener, service, async move {
            shutdown.await;
            // Open event reads would otherwise hold the shutdown for their long-poll or
            // SSE timeout (30-60 s), past what an orchestrator waits before SIGKILL.
            if let Some(admin) = admin {
                admin.stop_live_reads();
            }
        })
        .await
    }
}

/// The path of the batch endpoint, the one request the router is skipped for.
const BATCH: &str = "/v1/events/batch";

/// The server's service: `POST /v1/events/batch` answered without the axum router (under the
/// same edge steps: request id, CORS, the request's count and log line), every other request
/// by the [`router`](IngestServer::router).
#[derive(Clone)]
pub struct IngestService {
    state: Arc<IngestState>,
    router: Router,
}

type HotFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl IngestService {
    /// `router` is [`IngestServer::router`](super::IngestServer::router) over `state`.
    pub(super) fn new(state: Arc<IngestState>, router: Router) -> IngestService {
        IngestService { state, router }
    }
}

impl std::fmt::Debug for IngestService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestService").finish_non_exhaustive()
    }
}

impl Service<Request> for IngestService {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<HotFuture, RouteFuture<Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Both ways are always ready (the router's `poll_ready` is too).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // As the router matches: the path without the query, the method exactly.
        if request.method() == Method::POST && request.uri().path() == BATCH {
            let state = Arc::clone(&self.state);
            Either::Left(Box::pin(
                async move { Ok(answer_batch(&state, request).await) },
            ))
        } else {
            Either::Right(self.router.call(request))
        }
    }
}
