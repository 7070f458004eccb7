//! The events' read routes: `courier-streams`' Durable Streams server over the same storage,
//! mounted read-only (`GET` and `HEAD`) for the streams of `ingest/<app>` only, so the admin
//! token reads events without being able to write, delete or read the key log.

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{Next, from_fn};
use axum::response::Response;
use courier_streams::server::{ServerConfig, StreamsServer};
use courier_traits::storage::StreamStorage;
use http::{HeaderValue, Method, StatusCode, header};

use super::json::error;

/// Where the events' streams are read: `/v1/stream/ingest/<app>`.
const EVENTS_PREFIX: &str = "/v1/stream/ingest/";

/// The streams server over the events' storage, with the default read settings.
pub(crate) fn events_server(storage: Arc<dyn StreamStorage>) -> StreamsServer {
    StreamsServer::new(storage, ServerConfig::default())
}

/// `GET|HEAD /v1/stream/ingest/<app>` through `streams`; other methods 405, other streams 404.
pub(crate) fn read_routes(streams: &StreamsServer) -> Router {
    // The streams server's own router answers `/health` too: routing only the stream path to
    // it, as a service, keeps that route out of the ingest router (axum refuses two routes for
    // one path, and a `Router` given to `route_service` as is).
    let streams = streams.router().into_service::<axum::body::Body>();
    Router::new()
        .route_service("/v1/stream/{*name}", streams)
        .layer(from_fn(read_only))
}

async fn read_only(request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with(EVENTS_PREFIX) {
        return error(
            StatusCode::NOT_FOUND,
            "only ingest/<app_id> streams are served",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "the event streams are read-only here",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    next.run(without_extensions(request)).await
}

/// The request as the client sent it: the outer route's path parameters, kept in the
/// extensions, would be read by the streams server's own `Path` extractor as extra ones.
fn without_extensions(request: Request) -> Request {
    let (parts, body) = request.into_parts();
    let mut fresh = Request::new(body);
    *fresh.method_mut() = parts.method;
    *fresh.uri_mut() = parts.uri;
    *fresh.version_mut() = parts.version;
    *fresh.headers_mut() = parts.headers;
    fresh
}
