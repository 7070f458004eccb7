//! The hub over HTTP (axum): the WebSocket endpoint, the API for backends, health, metrics
//! and a demo page.
//!
//! | route | what |
//! |---|---|
//! | `GET /ws?client_id=ID&token=T&compress=gzip` | WebSocket; `compress=gzip` (or `brotli`) asks for compressed large messages ([`crate::compression`]); `client_id` optional (a random one is assigned), `token` when `client_token` or `client_grants` are set (or `Authorization: Bearer`); a token of `client_grants` limits the channels it may use |
//! | `POST /api/v1/clients/{id}/push` | push the body to one client (binary when `Content-Type: application/octet-stream`) |
//! | `POST /api/v1/broadcast` | broadcast the body |
//! | `POST /api/v1/channels/{channel}/publish` | publish the body (JSON, or else as a string) to a channel's subscribers |
//! | `GET /api/v1/channels/{channel}/presence` | `{"channel", "members": [{"client", "node"}]}` of a presence channel |
//! | `GET /api/v1/clients/count` | `{"local": n, "cluster": m}` |
//! | `GET /health` | `{"status": "ok" \| "degraded", "node": .., "bus": ..}`; the bus is asked now, with a 1 s deadline |
//! | `GET /metrics` | Prometheus text |
//! | `GET /` | the demo page |
//!
//! API routes need `Authorization: Bearer <api_key>` (or `X-Api-Key`); without a configured
//! key they answer 403, so a hub is never open by accident.

mod api;
mod auth;
mod options;
mod state;
pub mod ws;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::{AppMessage, ClientGrants, Hub, validate_client_id};
use auth::{bearer, secret_matches};
pub use options::ServerOptions;
use state::ServerState;

/// The hub's HTTP server.
#[derive(Clone, Debug)]
pub struct HubServer {
    state: Arc<ServerState>,
}

impl HubServer {
    /// Serves `hub` with `options`.
    pub fn new(hub: Hub, options: ServerOptions) -> HubServer {
        HubServer {
            state: Arc::new(ServerState { hub, options }),
        }
    }

    /// The routes, for embedding in a larger axum app.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(demo_page))
            .route("/ws", get(websocket))
            .route("/health", get(health))
            .route("/metrics", get(metrics))
            .route("/api/v1/clients/{id}/push", post(api::push))
            .route("/api/v1/broadcast", post(api::broadcast))
            .route("/api/v1/channels/{channel}/publish", post(api::publish))
            .route("/api/v1/channels/{channel}/presence", get(api::presence))
            .route("/api/v1/clients/count", get(api::count))
            .with_state(self.state.clone())
    }

    /// Serves on `listener` until `shutdown` completes, then disconnects every client
    /// (close 1001) and leaves the cluster.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let hub = self.state.hub.clone();
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        let server = courier_impls::http_server::serve(listener, self.router(), async move {
            stopped.cancelled().await;
        });
        let server = tokio::spawn(server);
        shutdown.await;
        // WebSocket connections never end by themselves: close them before waiting on axum.
        hub.shutdown().await;
        stop.cancel();
        match server.await {
            Ok(result) => result,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

#[derive(Deserialize)]
struct WsQuery {
    client_id: Option<String>,
    token: Option<String>,
    /// `gzip` or `brotli`: compress large server messages (see [`crate::compression`]).
    compress: Option<String>,
}

/// The socket's initial read buffer. tungstenite allocates 128 KiB per connection by default,
/// which was ~90 % of an idle connection's memory (benches/README.md); hub clients mostly
/// send small messages, and a larger one still grows the buffer to its length.
const READ_BUFFER_BYTES: usize = 4 * 1024;

async fn websocket(
    State(state): State<Arc<ServerState>>,
    Query(query): Query<WsQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let given = query.token.as_deref().or_else(|| bearer(&headers));
    let Some(grants) = client_grants(&state.options, given) else {
        return (StatusCode::UNAUTHORIZED, "missing or wrong token").into_response();
    };
    let id = match query.client_id {
        Some(id) => id,
        None => format!("c-{:016x}", rand::random::<u64>()),
    };
    if let Err(e) = validate_client_id(&id) {
        return (StatusCode::BAD_REQUEST, e.to_string()).into_response();
    }
    let compression = match query.compress.as_deref() {
        None | Some("") | Some("none") => None,
        Some(name) => match crate::compression::Algorithm::named(name) {
            Some(algorithm) => Some(algorithm.above(state.options.compression_threshold)),
            None => {
                let text = format!("compress={name:?} is not offered (use gzip or brotli)");
                return (StatusCode::BAD_REQUEST, text).into_response();
            }
        },
    };
    let hub = state.hub.clone();
    // The library reads messages up to twice the hub's limit, so one a little too large is
    // read whole and the hub closes with 1009 and a log line. Beyond that the library stops
    // reading at the frame header (memory stays bounded); the hub still closes with 1009, but
    // the unread rest may make the kernel reset the connection before the peer reads it.
    let library_limit = hub.config().max_message_bytes.saturating_mul(2);
    upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(library_limit)
        .max_frame_size(library_limit)
        .on_upgrade(move |socket| async move {
            let connection = ws::connection(socket);
            let welcome = AppMessage::new(
                0,
                "welcome",
                json!({ "client_id": &id, "node": hub.node_id() }),
            );
            let options = crate::ClientOptions {
                greeting: Some(crate::Frame::text(welcome.to_json())),
                grants,
                compression,
            };
            if let Err(e) = hub.register_client(&id, connection, options) {
                tracing::info!(client = %id, error = %e, "registration refused");
            }
        })
}

/// What a client presenting `given` may do on channels; `None` when it may not connect.
fn client_grants(options: &ServerOptions, given: Option<&str>) -> Option<ClientGrants> {
    if options.client_token.is_none() && options.client_grants.is_empty() {
        return Some(ClientGrants::default());
    }
    if let Some(expected) = &options.client_token
        && secret_matches(given, expected)
    {
        return Some(ClientGrants::default());
    }
    // Every token is compared (in constant time each), so timing does not say which matched.
    let mut found = None;
    for (token, grants) in &options.client_grants {
        if secret_matches(given, token) && found.is_none() {
            found = Some(grants.clone());
        }
    }
    found
}

/// How long `/health` waits for the bus to accept a probe before calling it unavailable.
const HEALTH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(1);

async fn health(State(state): State<Arc<ServerState>>) -> Response {
    let hub = &state.hub;
    let (status, bus) = match hub.check_bus(HEALTH_DEADLINE).await {
        None => ("ok", "disabled"),
        Some(true) => ("ok", "ok"),
        Some(false) => ("degraded", "unavailable"),
    };
    axum::Json(json!({
        "status": status,
        "node": hub.node_id(),
        "bus": bus,
        "clients": hub.local_count(),
    }))
    .into_response()
}

async fn metrics(State(state): State<Arc<ServerState>>) -> Response {
    let hub = &state.hub;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        hub.metrics().render(hub.node_id()),
    )
        .into_response()
}

async fn demo_page() -> Html<&'static str> {
    Html(include_str!("demo.html"))
}
