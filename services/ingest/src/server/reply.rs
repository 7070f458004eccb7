//! Every answer other than the 200: status, body and headers, as upstream writes them.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

/// One reason a request was refused with 400: the field (`events[3].app_id`, `events`,
/// `body`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Path of the offending field in the request (`body` for the body as a whole).
    pub field: String,
    /// What rule it broke.
    pub description: String,
}

impl Violation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// A request refused as a whole; nothing of it was stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// 400: the body is not a batch (bad JSON or gzip, `events` missing or empty, too many
    /// events, an unknown or duplicate field).
    #[error("bad request: {0:?}")]
    BadRequest(Vec<Violation>),
    /// 401: no `X-API-Key` header.
    #[error("missing API key")]
    MissingApiKey,
    /// 401: the key is malformed, unknown or revoked (one answer for all, as upstream).
    #[error("invalid API key")]
    InvalidApiKey,
    /// 413: the body, after decompression, is over the limit.
    #[error("{0}")]
    TooLarge(String),
    /// 415: an encoding or content type the server does not read.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 429: the app's token bucket is empty.
    #[error("rate limited, retry after {retry_after:?}")]
    RateLimited {
        /// When a token will be there again.
        retry_after: Duration,
    },
    /// 500: the storage refused the write for a reason retrying will not fix (the app's
    /// stream is closed or deleted, exists with another content type, the backend reports a
    /// permanent error); nothing was written. No `Retry-After`: an operator must act.
    #[error("{0}")]
    Internal(String),
    /// 503: the storage or the key store failed; the batch was not confirmed stored (a retry
    /// with the same idempotency keys stores each event once).
    #[error("{message}")]
    Unavailable {
        /// Why, without secrets.
        message: String,
        /// How long the client should wait.
        retry_after: Duration,
    },
}

impl RequestError {
    /// The HTTP status of this refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::MissingApiKey | Self::InvalidApiKey => StatusCode::UNAUTHORIZED,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// `Retry-After` in whole seconds (rounded up, at least 1), for 429 and 503.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after } | Self::Unavailable { retry_after, .. } => {
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                Some(secs.max(1))
            }
            _ => None,
        }
    }

    /// The response body. The 401 bodies are upstream's byte for byte: Go's
    /// `json.NewEncoder(w).Encode(map[string]string{"error": ...})`, trailing newline included.
    pub fn body(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Violations<'a> {
            violations: &'a [Violation],
        }
        #[derive(Serialize)]
        struct Message<'a> {
            message: &'a str,
        }
        let json = match self {
            Self::BadRequest(violations) => serde_json::to_vec(&Violations { violations }),
            Self::MissingApiKey => return b"{\"error\":\"missing API key\"}\n".to_vec(),
            Self::InvalidApiKey => return b"{\"error\":\"invalid API key\"}\n".to_vec(),
            Self::TooLarge(message)
            | Self::UnsupportedMediaType(message)
            | Self::Internal(message)
            | Self::Unavailable { message, .. } => serde_json::to_vec(&Message { message }),
            Self::RateLimited { .. } => serde_json::to_vec(&Message {
                message: "rate limit exceeded for this app",
            }),
        };
        // Serialising these plain structs of strings cannot fail.
        json.unwrap_or_default()
    }
}

impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), self.body()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after_secs() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_bodies_are_upstreams_byte_for_byte() {
        assert_eq!(
            RequestError::MissingApiKey.body(),
            b"{\"error\":\"missing API key\"}\n"
        );
        assert_eq!(
            RequestError::InvalidApiKey.body(),
            b"{\"error\":\"invalid API key\"}\n"
        );
        assert_eq!(RequestError::InvalidApiKey.status(), 401);
        assert_eq!(RequestError::InvalidApiKey.retry_after_secs(), None);
    }

    #[test]
    fn violations_and_messages() {
        let error = RequestError::BadRequest(vec![Violation::new("events[3].app_id", "required")]);
        assert_eq!(error.status(), 400);
        assert_eq!(
            String::from_utf8(error.body()).expect("utf-8"),
            r#"{"violations":[{"field":"events[3].app_id","description":"required"}]}"#
        );
        let error = RequestError::TooLarge("body over 10485760 bytes".into());
        assert_eq!(error.status(), 413);
        assert_eq!(error.body(), br#"{"message":"body over 10485760 bytes"}"#);
    }

    #[test]
    fn throttled_and_unavailable_carry_retry_after_in_whole_seconds() {
        let limited = RequestError::RateLimited {
            retry_after: Duration::from_millis(1),
        };
        let response = limited.clone().into_response();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&limited.body()).expect("json")["message"],
            "rate limit exceeded for this app"
        );
        let down = RequestError::Unavailable {
            message: "storage unavailable".into(),
            retry_after: Duration::from_millis(2_500),
        };
        let response = down.into_response();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let broken = RequestError::Internal("stream ingest/a is closed".into());
        assert_eq!(broken.retry_after_secs(), None);
        let response = broken.clone().into_response();
        assert_eq!(response.status(), 500);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
        assert_eq!(broken.body(), br#"{"message":"stream ingest/a is closed"}"#);
    }
}
