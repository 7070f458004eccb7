//! [`AdminApi`]: upstream's key management endpoints and the read routes of the events, behind
//! `Authorization: Bearer <admin token>`.
//!
//! - `POST /api/admin/keys {app_id, name}` → 201 `{id, app_id, name, key, message}`
//! - `DELETE /api/admin/keys/{id}` → `{status: "revoked", id}`, 404 for an unknown id
//! - `GET /api/admin/keys?app_id=` → `{keys: [{id, app_id, name, revoked, created_at,
//!   revoked_at?}], count}`
//! - `GET|HEAD /v1/stream/ingest/<app>`: the Durable Streams read protocol (see
//!   [`read_routes`](super::reads::read_routes)).
//!
//! Without a configured token every route answers 403; a missing or wrong token is 401.
//! Errors are upstream's `{"error": "..."}`; bad input is 400 naming the field.

use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use axum::routing::{delete, post};
use http::{HeaderValue, StatusCode, Uri, header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use courier_streams::server::StreamsServer;

use super::json::{error, json_response};
use super::log::{CreatedKey, KeyLog, KeyLogError};
use super::reads::{events_server, read_routes};
use super::table::KeyInfo;

/// Shown with every created key, as upstream words it.
const CREATED_MESSAGE: &str = "Store this key securely. It will not be shown again.";

/// The admin API over a [`KeyLog`] (mount [`AdminApi::router`], or hand it to
/// [`IngestServer::with_admin`](crate::server::IngestServer::with_admin)).
#[derive(Clone)]
pub struct AdminApi {
    state: Arc<AdminState>,
}

struct AdminState {
    /// SHA-256 of the token: comparing digests in constant time hides the token's length too.
    token: Option<[u8; 32]>,
    keys: Arc<KeyLog>,
    /// Serves the read routes; kept to end their live reads at shutdown.
    streams: StreamsServer,
}

impl fmt::Debug for AdminApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminApi")
            .field("token_configured", &self.state.token.is_some())
            .finish_non_exhaustive()
    }
}

impl AdminApi {
    /// The admin API over `keys`, open to holders of `admin_token` (`None` or empty: every
    /// route answers 403).
    pub fn new(admin_token: Option<&str>, keys: Arc<KeyLog>) -> Self {
        let token = admin_token
            .filter(|t| !t.is_empty())
            .map(|t| Sha256::digest(t.as_bytes()).into());
        let streams = events_server(Arc::clone(keys.storage()));
        Self {
            state: Arc::new(AdminState {
                token,
                keys,
                streams,
            }),
        }
    }

    /// Ends the read routes' live reads (long-polls and SSE answer at once), so a graceful
    /// shutdown does not wait out their timeouts. [`IngestServer::serve`](crate::server::IngestServer::serve)
    /// calls it when its shutdown signal fires.
    pub fn stop_live_reads(&self) {
        self.state.streams.stop_live_reads();
    }

    /// The routes, every one behind the admin token.
    pub fn router(&self) -> Router {
        let state = Arc::clone(&self.state);
        Router::new()
            .route("/api/admin/keys", post(create).get(list))
            .route("/api/admin/keys/{id}", delete(revoke))
            .with_state(Arc::clone(&state))
            .merge(read_routes(&state.streams))
            .layer(from_fn_with_state(state, require_admin))
    }
}

fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn require_admin(
    State(state): State<Arc<AdminState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = &state.token else {
        return error(
            StatusCode::FORBIDDEN,
            "admin API disabled: no admin token is configured",
        );
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    let matches = given.is_some_and(|token| {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        bool::from(digest.ct_eq(expected))
    });
    if !matches {
        let mut response = error(StatusCode::UNAUTHORIZED, "invalid admin token");
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    next.run(request).await
}

fn failure(error_: KeyLogError) -> Response {
    match error_ {
        KeyLogError::InvalidInput { .. } => error(StatusCode::BAD_REQUEST, &error_.to_string()),
        KeyLogError::UnknownKey(_) => error(StatusCode::NOT_FOUND, "API key not found"),
        KeyLogError::Storage(e) => {
            tracing::warn!(error = %e, "key log storage unavailable");
            let mut response = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "key log storage unavailable; retry",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    }
}

/// A string field of the request: `Ok(None)` when absent or null, else what is wrong with it.
fn string_field<'a>(request: &'a Value, field: &str) -> Result<Option<&'a str>, String> {
    match request.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{field} must be a string")),
    }
}

async fn create(State(state): State<Arc<AdminState>>, body: Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(value @ Value::Object(_)) => value,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid request body: expected a JSON object {app_id, name}",
            );
        }
    };
    let app_id = match string_field(&request, "app_id") {
        Ok(Some(app_id)) if !app_id.is_empty() => app_id,
        Ok(_) => return error(StatusCode::BAD_REQUEST, "app_id is required"),
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let name = match string_field(&request, "name") {
        Ok(name) => name.unwrap_or_default(),
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    match state.keys.create_key(app_id, name).await {
        Ok(created) => {
            tracing::info!(key_id = %created.info.id, app = %app_id, "API key created");
            json_response(StatusCode::CREATED, &created_key_json(&created))
        }
        Err(e) => failure(e),
    }
}

async fn revoke(State(state): State<Arc<AdminState>>, Path(id): Path<String>) -> Response {
    match state.keys.revoke(&id).await {
        Ok(info) => {
            tracing::info!(key_id = %info.id, app = %info.app_id, "API key revoked");
            json_response(StatusCode::OK, &revoked_key_json(&info))
        }
        Err(e) => failure(e),
    }
}

/// The answer to a creation, upstream's: `{id, app_id, name, key, message}`, the only place
/// the key is ever shown.
pub fn created_key_json(created: &CreatedKey) -> Value {
    json!({
        "id": created.info.id,
        "app_id": created.info.app_id,
        "name": created.info.name,
        "key": created.key,
        "message": CREATED_MESSAGE,
    })
}

/// The answer to a revocation, upstream's: `{status: "revoked", id}`.
pub fn revoked_key_json(info: &KeyInfo) -> Value {
    json!({ "status": "revoked", "id": info.id })
}

/// The key as upstream lists it: never its digest.
pub fn key_json(info: &KeyInfo) -> Value {
    let mut item = json!({
        "id": info.id,
        "app_id": info.app_id,
        "name": info.name,
        "revoked": info.revoked(),
        "created_at": info.created_at,
    });
    if let (Some(at), Value::Object(fields)) = (&info.revoked_at, &mut item) {
        fields.insert("revoked_at".into(), Value::String(at.clone()));
    }
    item
}

/// The body of a key list: `{keys: [...], count}`.
pub fn key_list_json(keys: &[KeyInfo]) -> Value {
    json!({
        "keys": keys.iter().map(key_json).collect::<Vec<_>>(),
        "count": keys.len(),
    })
}

async fn list(State(state): State<Arc<AdminState>>, uri: Uri) -> Response {
    let app_id = form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .find(|(name, _)| name == "app_id")
        .map(|(_, value)| value.into_owned())
        .filter(|app_id| !app_id.is_empty());
    let Some(app_id) = app_id else {
        return error(
            StatusCode::BAD_REQUEST,
            "app_id query parameter is required",
        );
    };
    match state.keys.list(Some(&app_id)).await {
        Ok(keys) => json_response(StatusCode::OK, &key_list_json(&keys)),
        Err(e) => failure(e),
    }
}
