//! The HTTP API for backends: push, broadcast, client count. API key required.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::auth::{bearer, secret_matches};
use super::state::ServerState;
use crate::{Delivery, Frame, FrameKind, HubError};

// The error is the response itself; it is built once per refused request, so its size is moot.
#[allow(clippy::result_large_err)]
fn authorize(state: &ServerState, headers: &HeaderMap) -> Result<(), Response> {
    let Some(expected) = &state.options.api_key else {
        return Err(error(
            StatusCode::FORBIDDEN,
            "api_disabled",
            "the API is disabled: set server.api_key (or --api-key / COURIER_HUB_API_KEY)",
        ));
    };
    let given = bearer(headers).or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
    if !secret_matches(given, expected) {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong API key",
        ));
    }
    Ok(())
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": code, "message": message })),
    )
        .into_response()
}

/// The API key check and the body as a frame: the preamble of push and broadcast.
#[allow(clippy::result_large_err)]
fn authorized_frame(
    state: &ServerState,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Frame, Response> {
    authorize(state, headers)?;
    frame_from(headers, body)
}

#[allow(clippy::result_large_err)]
fn frame_from(headers: &HeaderMap, body: Bytes) -> Result<Frame, Response> {
    let binary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/octet-stream"));
    let kind = if binary {
        FrameKind::Binary
    } else {
        FrameKind::Text
    };
    Frame::new(kind, body).map_err(|e| hub_error(&e))
}

fn hub_error(e: &HubError) -> Response {
    let (status, code) = match e {
        HubError::ClientNotFound(_) => (StatusCode::NOT_FOUND, "client_not_found"),
        HubError::SendBufferFull(_) => (StatusCode::SERVICE_UNAVAILABLE, "send_buffer_full"),
        HubError::FrameTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "frame_too_large"),
        HubError::InvalidInput(_) => (StatusCode::BAD_REQUEST, "invalid_input"),
        HubError::Bus(_) => (StatusCode::SERVICE_UNAVAILABLE, "bus_unavailable"),
        HubError::Closed => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    let mut response = error(status, code, &e.to_string());
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}

pub(super) async fn push(
    State(state): State<Arc<ServerState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let frame = match authorized_frame(&state, &headers, body) {
        Ok(frame) => frame,
        Err(refused) => return refused,
    };
    match state.hub.push(&id, frame).await {
        Ok(Delivery::Local) => {
            axum::Json(json!({ "delivered": "local", "node": state.hub.node_id() })).into_response()
        }
        Ok(Delivery::Remote { node }) => {
            axum::Json(json!({ "delivered": "remote", "node": node })).into_response()
        }
        Err(e) => hub_error(&e),
    }
}

pub(super) async fn broadcast(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let frame = match authorized_frame(&state, &headers, body) {
        Ok(frame) => frame,
        Err(refused) => return refused,
    };
    match state.hub.broadcast(frame).await {
        Ok(report) => axum::Json(json!({
            "delivered": report.delivered,
            "dropped": report.dropped,
            "published": report.published,
        }))
        .into_response(),
        Err(e) => hub_error(&e),
    }
}

pub(super) async fn count(State(state): State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorize(&state, &headers) {
        return denied;
    }
    axum::Json(json!({
        "local": state.hub.local_count(),
        "cluster": state.hub.client_count(),
        "node": state.hub.node_id(),
    }))
    .into_response()
}

pub(super) async fn publish(
    State(state): State<Arc<ServerState>>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = authorize(&state, &headers) {
        return refused;
    }
    // JSON bodies are published as JSON; anything else as a string (UTF-8 required).
    let data = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(value) => value,
        Err(_) => match std::str::from_utf8(&body) {
            Ok(text) => serde_json::Value::String(text.to_owned()),
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_input",
                    "the body must be JSON or UTF-8 text",
                );
            }
        },
    };
    match state.hub.publish(&channel, &data).await {
        Ok(report) => axum::Json(json!({
            "channel": channel,
            "delivered": report.delivered,
            "dropped": report.dropped,
            "published": report.published,
        }))
        .into_response(),
        Err(e) => hub_error(&e),
    }
}

pub(super) async fn presence(
    State(state): State<Arc<ServerState>>,
    Path(channel): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = authorize(&state, &headers) {
        return refused;
    }
    match state.hub.presence(&channel) {
        Ok(members) => {
            axum::Json(json!({ "channel": channel, "members": members })).into_response()
        }
        Err(e) => hub_error(&e),
    }
}
