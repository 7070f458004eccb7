//! Building responses: protocol headers, and errors turned into the statuses the protocol uses.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use courier_traits::InvalidInput;
use courier_traits::storage::{Offset, StorageError};

use super::names;
use crate::protocol;

/// Content types answered without copying their text (see [`Reply::content_type`]).
const OCTET_STREAM: &str = "application/octet-stream";
const TEXT_PLAIN: &str = "text/plain";
// Built at compile time (`from_static` checks each byte when it runs).
const OCTET_STREAM_VALUE: HeaderValue = HeaderValue::from_static(OCTET_STREAM);
const JSON_VALUE: HeaderValue = HeaderValue::from_static(protocol::JSON);
const TEXT_PLAIN_VALUE: HeaderValue = HeaderValue::from_static(TEXT_PLAIN);

/// A response under construction: status, headers, body.
pub(crate) struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Body,
}

impl Reply {
    pub(crate) fn new(status: StatusCode) -> Reply {
        Reply {
            status,
            // Room for a reply's headers and the four the edge layer adds, without regrowing.
            headers: HeaderMap::with_capacity(12),
            body: Body::empty(),
        }
    }

    /// Adds a header; values that are not valid header text are dropped (they never come from
    /// client input here: offsets, numbers and content types are validated before).
    pub(crate) fn header(mut self, name: HeaderName, value: impl AsRef<str>) -> Reply {
        if let Ok(value) = HeaderValue::from_str(value.as_ref()) {
            self.headers.insert(name, value);
        }
        self
    }

    /// Adds a header whose value is `value`'s buffer, not a copy of it (when the buffer is
    /// full: `Bytes::from` a `String` with spare room allocates).
    pub(crate) fn owned_header(mut self, name: HeaderName, value: String) -> Reply {
        if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(value)) {
            self.headers.insert(name, value);
        }
        self
    }

    /// `Content-Type`: the common types from static text, others copied.
    pub(crate) fn content_type(self, content_type: &str) -> Reply {
        match content_type {
            OCTET_STREAM => self.value(names::CONTENT_TYPE, OCTET_STREAM_VALUE),
            protocol::JSON => self.value(names::CONTENT_TYPE, JSON_VALUE),
            TEXT_PLAIN => self.value(names::CONTENT_TYPE, TEXT_PLAIN_VALUE),
            other => self.header(names::CONTENT_TYPE, other),
        }
    }

    fn value(mut self, name: HeaderName, value: HeaderValue) -> Reply {
        self.headers.insert(name, value);
        self
    }

    pub(crate) fn static_header(mut self, name: HeaderName, value: &'static str) -> Reply {
        self.headers.insert(name, HeaderValue::from_static(value));
        self
    }

    pub(crate) fn next_offset(self, offset: &Offset) -> Reply {
        self.header(names::NEXT_OFFSET, offset.as_str())
    }

    pub(crate) fn closed_if(self, closed: bool) -> Reply {
        if closed {
            self.static_header(names::CLOSED, "true")
        } else {
            self
        }
    }

    pub(crate) fn up_to_date_if(self, up_to_date: bool) -> Reply {
        if up_to_date {
            self.static_header(names::UP_TO_DATE, "true")
        } else {
            self
        }
    }

    pub(crate) fn body(mut self, body: impl Into<Body>) -> Reply {
        self.body = body.into();
        self
    }

    /// The body: `bytes`, or none when they are empty (an empty body is not boxed).
    pub(crate) fn bytes_body(self, bytes: Bytes) -> Reply {
        if bytes.is_empty() {
            self
        } else {
            self.body(bytes)
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = Response::new(self.body);
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
    }
}

/// Which request failed: a few storage errors map to different statuses per method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    Create,
    Other,
}

/// A request that failed, with the status and headers the protocol prescribes.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Malformed request (bad header, offset, body).
    BadRequest(String),
    /// Not a stream path.
    NotFound(String),
    /// The request uses an HTTP feature this server does not implement.
    NotImplemented(String),
    /// The storage refused or failed.
    Storage(StorageError, Operation),
}

impl Failure {
    pub(crate) fn bad(message: impl Into<String>) -> Failure {
        Failure::BadRequest(message.into())
    }

    pub(crate) fn storage(op: Operation) -> impl Fn(StorageError) -> Failure {
        move |e| Failure::Storage(e, op)
    }
}

impl From<InvalidInput> for Failure {
    fn from(e: InvalidInput) -> Failure {
        Failure::BadRequest(e.to_string())
    }
}

impl From<StorageError> for Failure {
    fn from(e: StorageError) -> Failure {
        Failure::Storage(e, Operation::Other)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let (status, message, reply) = match self {
            Failure::BadRequest(m) => (StatusCode::BAD_REQUEST, m, None),
            Failure::NotFound(m) => (StatusCode::NOT_FOUND, m, None),
            Failure::NotImplemented(m) => (StatusCode::NOT_IMPLEMENTED, m, None),
            Failure::Storage(e, op) => {
                let mut status = storage_status(&e);
                // A name kept for a deleted stream's forks cannot be created again: a conflict.
                if op == Operation::Create && matches!(e, StorageError::Gone { .. }) {
                    status = StatusCode::CONFLICT;
                }
                if status.is_server_error() {
                    tracing::warn!(error = %e, "storage failed");
                }
                let reply = storage_error_headers(&e, Reply::new(status));
                (status, e.to_string(), Some(reply))
            }
        };
        let reply = reply.unwrap_or_else(|| Reply::new(status));
        reply
            .static_header(names::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(message)
            .into_response()
    }
}

/// The status the Durable Streams protocol gives a storage error. A variant this service does
/// not know yet (the enum is non-exhaustive) is a 500.
fn storage_status(e: &StorageError) -> StatusCode {
    match e {
        StorageError::InvalidInput(_)
        | StorageError::UnknownOffset { .. }
        | StorageError::ProducerEpochStart { .. } => StatusCode::BAD_REQUEST,
        StorageError::StaleProducerEpoch { .. } => StatusCode::FORBIDDEN,
        StorageError::NotFound { .. } | StorageError::ForkSourceNotFound { .. } => {
            StatusCode::NOT_FOUND
        }
        StorageError::ConfigConflict { .. }
        | StorageError::ForkSourceGone { .. }
        | StorageError::Closed { .. }
        | StorageError::ContentTypeMismatch { .. }
        | StorageError::WriterSeqRegression { .. }
        | StorageError::ProducerSeqGap { .. } => StatusCode::CONFLICT,
        StorageError::Gone { .. } => StatusCode::GONE,
        StorageError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        StorageError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The extra headers some errors carry (final offset of a closed stream, producer state).
fn storage_error_headers(e: &StorageError, reply: Reply) -> Reply {
    match e {
        StorageError::Closed { next_offset, .. } => reply.next_offset(next_offset).closed_if(true),
        StorageError::StaleProducerEpoch { current, .. } => {
            reply.header(names::PRODUCER_EPOCH, current.to_string())
        }
        StorageError::ProducerSeqGap { expected, received } => reply
            .header(names::PRODUCER_EXPECTED_SEQ, expected.to_string())
            .header(names::PRODUCER_RECEIVED_SEQ, received.to_string()),
        StorageError::Unavailable { .. } => reply.static_header(names::RETRY_AFTER, "1"),
        _ => reply,
    }
}

#[cfg(test)]
mod tests {
    use courier_traits::storage::StreamName;

    use super::*;

    /// Static or copied, every content type and owned value is answered as given.
    #[test]
    fn headers_are_answered_as_given() {
        for content_type in [OCTET_STREAM, protocol::JSON, TEXT_PLAIN, "text/x-custom"] {
            let response = Reply::new(StatusCode::OK)
                .content_type(content_type)
                .owned_header(names::ETAG, format!("\"-1:{content_type}\""))
                .into_response();
            assert_eq!(response.headers()[names::CONTENT_TYPE], content_type);
            assert_eq!(
                response.headers()[names::ETAG],
                format!("\"-1:{content_type}\"").as_str()
            );
        }
    }

    #[test]
    fn storage_errors_get_the_protocol_statuses() {
        let name = StreamName::new("s").expect("valid");
        let off = Offset::parse("0001").expect("valid");
        let cases: Vec<(StorageError, u16)> = vec![
            (InvalidInput::new("offset", "x", "bad").into(), 400),
            (
                StorageError::UnknownOffset {
                    stream: name.clone(),
                    offset: off.clone(),
                },
                400,
            ),
            (StorageError::ProducerEpochStart { epoch: 2, seq: 1 }, 400),
            (
                StorageError::StaleProducerEpoch {
                    current: 2,
                    received: 1,
                },
                403,
            ),
            (
                StorageError::NotFound {
                    stream: name.clone(),
                },
                404,
            ),
            (
                StorageError::ForkSourceNotFound {
                    source_stream: name.clone(),
                },
                404,
            ),
            (
                StorageError::ConfigConflict {
                    stream: name.clone(),
                    reason: "differs".into(),
                },
                409,
            ),
            (
                StorageError::ForkSourceGone {
                    source_stream: name.clone(),
                },
                409,
            ),
            (
                StorageError::Closed {
                    stream: name.clone(),
                    next_offset: off,
                },
                409,
            ),
            (
                StorageError::ContentTypeMismatch {
                    expected: "a/b".into(),
                    received: "c/d".into(),
                },
                409,
            ),
            (
                StorageError::WriterSeqRegression {
                    last: "2".into(),
                    received: "1".into(),
                },
                409,
            ),
            (
                StorageError::ProducerSeqGap {
                    expected: 3,
                    received: 5,
                },
                409,
            ),
            (StorageError::Gone { stream: name }, 410),
            (
                StorageError::TooLarge {
                    what: "record",
                    size: 9,
                    limit: 8,
                },
                413,
            ),
            (
                StorageError::Unavailable {
                    message: "down".into(),
                    source: None,
                },
                503,
            ),
            (
                StorageError::Backend {
                    message: "broken".into(),
                    source: None,
                },
                500,
            ),
        ];
        for (err, status) in cases {
            assert_eq!(storage_status(&err).as_u16(), status, "{err}");
        }
    }
}
