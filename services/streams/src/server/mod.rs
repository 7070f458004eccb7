//! The Durable Streams HTTP server over any [`StreamStorage`].
//!
//! Limits beyond the protocol: a JSON-mode message may nest arrays and objects at most 64
//! levels deep (deeper gets 400), and a request body sent with a transfer coding other than
//! `chunked` gets 501 (RFC 9112 §6.1).
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use std::sync::Arc;
//! use courier_impls::memory::MemoryStreamStorage;
//! use courier_streams::server::{ServerConfig, StreamsServer};
//!
//! let server = StreamsServer::new(Arc::new(MemoryStreamStorage::new()), ServerConfig::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:4437").await?;
//! server.serve(listener, std::future::pending()).await
//! # }
//! ```

mod append;
mod caching;
mod config;
mod create;
mod edge;
mod first_batch;
mod hot_routes;
mod http1;
mod json;
mod meta;
mod names;
mod read;
mod reply;
mod request;
mod security;
mod sse;
mod state;
mod subscriptions;
mod transfer_coding;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use courier_traits::storage::StreamStorage;
use tokio::net::TcpListener;

pub use config::ServerConfig;
use state::AppState;
pub use subscriptions::SubscriptionSettings;

/// The Durable Streams server: streams under `/v1/stream/`, `GET /health`.
#[derive(Clone)]
pub struct StreamsServer {
    state: AppState,
}

impl StreamsServer {
    /// A server over `storage`.
    pub fn new(storage: Arc<dyn StreamStorage>, config: ServerConfig) -> StreamsServer {
        StreamsServer {
            state: AppState::new(storage, config),
        }
    }

    /// The axum router, to mount in a larger application or serve yourself. Live reads of
    /// this router end when [`StreamsServer::serve`]'s shutdown signal fires.
    pub fn router(&self) -> Router {
        let limit = self.state.config().max_append_bytes;
        let streams = get(read::read)
            .head(meta::head)
            .put(create::create)
            .post(append::append)
            .delete(meta::delete)
            .options(meta::preflight);
        let mut router = Router::new().route("/v1/stream/{*name}", streams);
        if self.state.config().subscriptions.is_some() {
            router = router.route(
                "/v1/stream/__ds/{*rest}",
                axum::routing::any(subscriptions::routes::control),
            );
        }
        router
            .route("/health", get(|| async { "ok" }))
            .layer(DefaultBodyLimit::max(limit))
            .layer(edge::Edge)
            .with_state(self.state.clone())
    }

    /// Ends every live read of this server's routers: waiting long-polls and SSE readers
    /// answer at once, and new ones do not wait. [`StreamsServer::serve`] does this when its
    /// shutdown signal fires; call it yourself when you mount [`StreamsServer::router`] in
    /// another server, before that server's graceful shutdown waits for open requests.
    pub fn stop_live_reads(&self) {
        self.state.shutdown().cancel();
    }

    /// Serves on `listener` until `shutdown` completes, then stops accepting, wakes every
    /// waiting long-poll and SSE reader (they answer at once), and waits for open requests.
    /// Dropping the returned future before it completes ends live reads and connections too.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let token = self.state.shutdown().clone();
        if let Some(subscriptions) = self.state.subscriptions() {
            // After a restart, wakes left pending are started without waiting for a request.
            subscriptions.ensure_started();
        }
        let routes = hot_routes::HotRoutes::new(self.state.clone(), self.router());
        http1::serve(listener, routes, shutdown, token).await
    }
}
