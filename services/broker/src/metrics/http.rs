//! `GET /metrics` on a listener of its own, so scrapes never share the gRPC port (which may
//! face clients) and need no HTTP/2.

use std::future::Future;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use courier_impls::metrics::TEXT_FORMAT;

use super::MetricsEndpoint;

/// Serves `GET /metrics` (the text exposition format) on `listener` until `shutdown`
/// completes; other paths answer 404.
///
/// Errors: the listener failing.
pub async fn serve(
    listener: tokio::net::TcpListener,
    endpoint: MetricsEndpoint,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = Router::new().route(
        "/metrics",
        get(move || {
            let text = endpoint.render();
            async move { ([(CONTENT_TYPE, TEXT_FORMAT)], text) }
        }),
    );
    courier_impls::http_server::serve(listener, router, shutdown).await
}
