//! [`ApiError`]: a refused subscription request, answered as `{"error":{"code","message"}}`
//! with the status the reference server uses for that code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use courier_traits::storage::StorageError;
use serde_json::{Map, Value, json};

/// A refused or failed subscription request.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// More fields of the error object (`current_holder` of `ALREADY_CLAIMED`).
    details: Map<String, Value>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Map::new(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)
    }

    pub(crate) fn not_found() -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "SUBSCRIPTION_NOT_FOUND",
            "Subscription not found",
        )
    }

    pub(crate) fn fenced() -> Self {
        ApiError::new(StatusCode::CONFLICT, "FENCED", "Wake generation is stale")
    }

    pub(crate) fn token_invalid() -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "TOKEN_INVALID", "Token invalid")
    }

    pub(crate) fn invalid_offset(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, "INVALID_OFFSET", message)
    }

    pub(crate) fn with_detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// The error code, for tests and logs.
    pub(crate) fn code(&self) -> &'static str {
        self.code
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        // The storage holds the subscription state: its failures are the server's, not the
        // client's (a retryable one is a 503 the client may try again).
        let status = if courier_traits::error::Classify::is_retryable(&e) {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        tracing::warn!(error = %e, "subscription storage failed");
        ApiError::new(status, "INTERNAL_ERROR", "subscription storage failed")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = self.details;
        error.insert("code".to_owned(), json!(self.code));
        error.insert("message".to_owned(), json!(self.message));
        json_response(self.status, &json!({ "error": error }))
    }
}

/// A JSON response.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    response
}
