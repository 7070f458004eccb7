//! [`HotRoutes`]: the service [`StreamsServer::serve`](super::StreamsServer::serve) runs.
//! Reads and appends of a stream (`GET` and `POST` on `/v1/stream/{name}`) go straight to
//! their handlers; every other request goes through the axum router.
//!
//! Why: the router costs about a dozen allocations and as many dynamic calls per request
//! (boxed clones of the route's service and of the method router's, the path parameters put
//! into the request's extensions, boxed handler futures). That is as much work as a read at
//! the tail or a small append does otherwise. The answers are the router's: same handlers,
//! same edge layer ([`edge::enter`]), same percent-decoding of the name; a path the router
//! would treat differently (an empty name, one that is not UTF-8 once decoded, the control
//! APIs under `__ds/`) is left to the router.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::future::RouteFuture;
use futures::future::Either;
use tower::Service;

use super::state::AppState;
use super::{append, edge, read};

/// The path every stream lives under (the router's `/v1/stream/{*name}`).
const STREAMS: &str = "/v1/stream/";
/// Where the router mounts the control APIs, when subscriptions are enabled.
const CONTROL: &str = "__ds/";

/// The server's service: see the [module docs](self).
#[derive(Clone)]
pub(crate) struct HotRoutes {
    app: AppState,
    router: Router,
}

/// A request [`HotRoutes`] answers itself.
pub(crate) enum Hot {
    Read,
    Append,
}

type HotFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl HotRoutes {
    /// `router` is [`StreamsServer::router`](super::StreamsServer::router) over `app`.
    pub(crate) fn new(app: AppState, router: Router) -> HotRoutes {
        HotRoutes { app, router }
    }

    /// The handler and the decoded stream name, if this request is one of the hot ones.
    pub(crate) fn route<B>(&self, request: &axum::http::Request<B>) -> Option<(Hot, String)> {
        let hot = match *request.method() {
            Method::GET => Hot::Read,
            Method::POST => Hot::Append,
            _ => return None,
        };
        let raw = request.uri().path().strip_prefix(STREAMS)?;
        if raw.is_empty() || (self.app.subscriptions().is_some() && raw.starts_with(CONTROL)) {
            return None;
        }
        // As axum decodes a path parameter; one that is not UTF-8 gets the router's 400.
        let name = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .ok()?
            .into_owned();
        Some((hot, name))
    }

    /// The answer to `request`, which [`HotRoutes::route`] found to be `hot` on stream `name`.
    pub(crate) fn answer(
        &self,
        hot: Hot,
        name: String,
        request: Request,
    ) -> impl Future<Output = Response> + Send + 'static {
        answer(hot, self.app.clone(), name, request)
    }

    /// The largest append body the server takes.
    pub(crate) fn max_append_bytes(&self) -> usize {
        self.app.config().max_append_bytes
    }
}

async fn answer(hot: Hot, app: AppState, name: String, request: Request) -> Response {
    let finish = match edge::enter(&request) {
        edge::Entry::Pass(finish) => finish,
        edge::Entry::Refused(refusal) => return refusal,
    };
    let response = match hot {
        Hot::Read => read::read(State(app), Path(name), request)
            .await
            .into_response(),
        Hot::Append => append::append(State(app), Path(name), request)
            .await
            .into_response(),
    };
    finish(response)
}

impl Service<Request> for HotRoutes {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<HotFuture, RouteFuture<Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Both ways are always ready (the router's `poll_ready` is too).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.route(&request) {
            Some((hot, name)) => {
                let app = self.app.clone();
                Either::Left(Box::pin(async move {
                    Ok(answer(hot, app, name, request).await)
                }))
            }
            None => Either::Right(self.router.call(request)),
        }
    }
}
