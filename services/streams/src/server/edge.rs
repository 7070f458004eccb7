//! [`Edge`]: what every request and response of the server passes through, the
//! transfer-coding check and the security and CORS headers, as one layer.
//!
//! Written out by hand rather than with `axum::middleware::from_fn`, which boxes the
//! middleware's future and wraps the rest of the stack in a boxed service on every request:
//! two such layers were a dozen allocations and dynamic calls per request on paths that do
//! little else (an append, a read at the tail).

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::Method;
use axum::response::Response;
use futures::TryFutureExt;
use futures::future::{Either, MapOk};
use tower::{Layer, Service};

use super::{security, transfer_coding};

/// The layer: see the [module docs](self).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Edge;

impl<S> Layer<S> for Edge {
    type Service = EdgeService<S>;

    fn layer(&self, inner: S) -> EdgeService<S> {
        EdgeService { inner }
    }
}

/// The service [`Edge`] wraps a route in.
#[derive(Clone, Debug)]
pub(crate) struct EdgeService<S> {
    inner: S,
}

/// Adds the headers every response carries.
pub(crate) type Finish = fn(Response) -> Response;

impl<S> Service<Request> for EdgeService<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, MapOk<S::Future, Finish>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match enter(&request) {
            Entry::Pass(finish) => Either::Right(self.inner.call(request).map_ok(finish)),
            Entry::Refused(refusal) => Either::Left(ready(Ok(refusal))),
        }
    }
}

/// What the edge decides before a request reaches its handler.
pub(crate) enum Entry {
    /// On to the handler; this adds the headers to its response.
    Pass(Finish),
    /// Refused before its body is read: the finished response.
    Refused(Response),
}

/// The edge's decision on `request` (see [`Entry`]).
pub(crate) fn enter(request: &Request) -> Entry {
    let finish: Finish = if request.method() == Method::OPTIONS {
        security::with_preflight_headers
    } else {
        security::with_headers
    };
    match transfer_coding::refusal(request) {
        Some(refusal) => Entry::Refused(finish(refusal)),
        None => Entry::Pass(finish),
    }
}
