//! The HTTP side: `{root}/__ds/...` requests parsed and answered.
//!
//! | route | methods |
//! |---|---|
//! | `__ds/jwks.json` | `GET` |
//! | `__ds/subscriptions/:id` | `PUT`, `GET`, `DELETE` |
//! | `__ds/subscriptions/:id/streams` | `POST` |
//! | `__ds/subscriptions/:id/streams/:path` | `DELETE` |
//! | `__ds/subscriptions/:id/{callback,claim,ack,release}` | `POST` |

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;

use super::errors::{ApiError, json_response};
use super::model::{Kind, SubscriptionConfig, normalize_path};
use super::operations::WakeRequest;
use crate::server::request;
use crate::server::state::AppState;

/// Answers every request under `{root}/__ds/` (`rest` is the part after it).
pub(crate) async fn control(
    State(app): State<AppState>,
    Path(rest): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(subs) = app.subscriptions() else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "subscriptions are not enabled on this server",
        )
        .into_response();
    };
    subs.ensure_started();
    match answer(subs, &rest, &method, &headers, &body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn answer(
    subs: &super::Subscriptions,
    rest: &str,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let base = request::origin(headers);
    if rest == "jwks.json" {
        if method != Method::GET {
            return Err(not_allowed());
        }
        let mut response = json_response(StatusCode::OK, &subs.jwks().await?);
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/jwk-set+json"),
        );
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        );
        return Ok(response);
    }
    let Some(route) = rest.strip_prefix("subscriptions/") else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "SUBSCRIPTION_NOT_FOUND",
            "Durable Streams control route not found",
        ));
    };
    let (id, action) = route.split_once('/').unwrap_or((route, ""));
    if id.is_empty() {
        return Err(ApiError::not_found());
    }
    let no_content = || StatusCode::NO_CONTENT.into_response();
    match (action, method) {
        ("", &Method::PUT) => {
            let config = SubscriptionConfig::parse(&json_body(body)?)?;
            let (status, value) = subs.create(id, config, &base).await?;
            Ok(json_response(status, &value))
        }
        ("", &Method::GET) => Ok(json_response(StatusCode::OK, &subs.get(id, &base).await?)),
        ("", &Method::DELETE) => {
            subs.delete(id).await?;
            Ok(no_content())
        }
        ("streams", &Method::POST) => {
            let streams = json_body(body)?
                .get("streams")
                .and_then(Value::as_array)
                .and_then(|list| {
                    list.iter()
                        .map(|s| s.as_str().filter(|s| !s.is_empty()).map(normalize_path))
                        .collect::<Option<Vec<String>>>()
                })
                .filter(|list| !list.is_empty())
                .ok_or_else(|| ApiError::invalid("streams must be a non-empty string array"))?;
            subs.add_streams(id, streams).await?;
            Ok(no_content())
        }
        (action, &Method::DELETE) if action.starts_with("streams/") => {
            subs.remove_stream(id, &action["streams/".len()..]).await?;
            Ok(no_content())
        }
        ("callback", &Method::POST) => {
            let token = bearer(headers)?;
            let request = WakeRequest::parse(&json_body(body)?)?;
            let value = subs.acknowledge(id, Kind::Webhook, token, request).await?;
            Ok(json_response(StatusCode::OK, &value))
        }
        ("ack", &Method::POST) => {
            let token = bearer(headers)?;
            let request = WakeRequest::parse(&json_body(body)?)?;
            let value = subs.acknowledge(id, Kind::PullWake, token, request).await?;
            Ok(json_response(StatusCode::OK, &value))
        }
        ("claim", &Method::POST) => {
            let body = json_body(body)?;
            let worker = body
                .get("worker")
                .and_then(Value::as_str)
                .filter(|w| !w.is_empty())
                .ok_or_else(|| ApiError::invalid("worker must be a non-empty string"))?;
            Ok(json_response(
                StatusCode::OK,
                &subs.claim(id, worker).await?,
            ))
        }
        ("release", &Method::POST) => {
            let token = bearer(headers)?;
            subs.release(id, token, WakeRequest::parse(&json_body(body)?)?)
                .await?;
            Ok(no_content())
        }
        ("" | "streams" | "callback" | "ack" | "claim" | "release", _) => Err(not_allowed()),
        _ if action.starts_with("streams/") => Err(not_allowed()),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "SUBSCRIPTION_NOT_FOUND",
            "Durable Streams control route not found",
        )),
    }
}

fn not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "Method not allowed",
    )
}

/// The request body as JSON (an empty body is `{}`).
fn json_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_slice(body).map_err(|_| ApiError::invalid("Invalid JSON body"))
}

/// The `Authorization: Bearer` token (never logged).
fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "TOKEN_INVALID",
                "Missing or malformed Authorization header",
            )
        })
}
