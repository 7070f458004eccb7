//! The client side of the wire, as two traits.
//!
//! Client SDKs (the streams client, the hub client, later the event SDK and the broker client)
//! are written against these traits, never against a concrete HTTP, WebSocket or gRPC library,
//! so they run over an in-process transport in unit tests.
//!
//! # Why two traits
//!
//! The wires Courier speaks come in two shapes that share almost nothing:
//!
//! * **Request/response** ([`RequestTransport`]): HTTP batch delivery, Durable Streams
//!   requests, gRPC unary calls. One request, one response; the response body may be a stream
//!   (SSE, a long download, gRPC server streaming), which [`ResponseBody`] covers.
//! * **Duplex framed connections** ([`DuplexTransport`]): WebSocket, gRPC bidirectional
//!   streaming. Long-lived, frames both ways, and the two directions are driven by different
//!   tasks, so a connection is handed out already split into a [`FrameSender`] and a
//!   [`FrameReceiver`].
//!
//! A single trait would force every request/response implementation to fake a connection and
//! every duplex one to fake request matching. The hub's server side uses the same
//! [`FrameSender`]/[`FrameReceiver`] pair for its accepted connections, so one in-memory fake
//! serves both ends in tests.
//!
//! # Errors
//!
//! [`TransportError`] says whether a failure is retryable and carries a server's retry-after
//! hint, so a [`RetryPolicy`](crate::retry::RetryPolicy) can act on it.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::error::{BoxError, Classify, ErrorClass};

/// A request method. gRPC calls use [`Method::Post`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
    /// OPTIONS
    Options,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
        })
    }
}

/// Header names and values, in order; names compare case-insensitively through [`header`].
pub type Headers = Vec<(String, String)>;

/// The first value of header `name` (case-insensitive).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A request to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// Path and query relative to the transport's base (`/v1/stream/a?offset=-1`), or a gRPC
    /// method path (`/pkg.Service/Method`).
    pub target: String,
    /// Request headers.
    pub headers: Headers,
    /// The body (empty for none).
    pub body: Bytes,
    /// Give up after this long; `None` = the transport's default.
    pub timeout: Option<Duration>,
}

impl Request {
    /// A request with no headers or body.
    pub fn new(method: Method, target: impl Into<String>) -> Request {
        Request {
            method,
            target: target.into(),
            headers: Vec::new(),
            body: Bytes::new(),
            timeout: None,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Request {
        self.body = body.into();
        self
    }
}

/// A response body: whole, or a stream of chunks (SSE, server streaming).
pub enum ResponseBody {
    /// The whole body.
    Full(Bytes),
    /// Chunks as they arrive; an error item ends the body.
    Stream(BoxStream<'static, Result<Bytes, TransportError>>),
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseBody::Full(b) => write!(f, "Full({} bytes)", b.len()),
            ResponseBody::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}

impl ResponseBody {
    /// Collects the whole body, failing with [`TransportError::Protocol`] past `limit` bytes.
    pub async fn collect(self, limit: usize) -> Result<Bytes, TransportError> {
        match self {
            ResponseBody::Full(b) if b.len() <= limit => Ok(b),
            ResponseBody::Full(b) => Err(TransportError::body_too_large(b.len(), limit)),
            ResponseBody::Stream(mut chunks) => {
                let mut all = Vec::new();
                while let Some(chunk) = chunks.next().await {
                    let chunk = chunk?;
                    if all.len() + chunk.len() > limit {
                        return Err(TransportError::body_too_large(
                            all.len() + chunk.len(),
                            limit,
                        ));
                    }
                    all.extend_from_slice(&chunk);
                }
                Ok(Bytes::from(all))
            }
        }
    }
}

/// A response.
#[derive(Debug)]
pub struct Response {
    /// The status code (HTTP status; gRPC calls map their status onto HTTP's).
    pub status: u16,
    /// Response headers.
    pub headers: Headers,
    /// The body.
    pub body: ResponseBody,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// One request, one response: HTTP, gRPC unary.
///
/// Implementations return `Ok` for every response the server sent, whatever its status;
/// `Err` means no response arrived (connect failure, timeout, broken connection).
///
/// # Example
///
/// ```
/// use courier_traits::transport::{Method, Request, RequestTransport, TransportError};
///
/// async fn health(t: &dyn RequestTransport) -> Result<bool, TransportError> {
///     let resp = t.send(Request::new(Method::Get, "/health")).await?;
///     Ok(resp.status == 200)
/// }
/// ```
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait RequestTransport: Send + Sync {
    /// Sends `request` and returns the server's response.
    ///
    /// Cancellation: dropping the future abandons the request; the server may still have
    /// processed it, so only retry idempotent requests (or use producer stamps).
    async fn send(&self, request: Request) -> Result<Response, TransportError>;
}

/// A frame on a duplex connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A UTF-8 text frame.
    Text(String),
    /// A binary frame.
    Binary(Bytes),
    /// A keep-alive ping (WebSocket); the peer answers with a pong.
    Ping(Bytes),
    /// The answer to a ping.
    Pong(Bytes),
}

/// The sending half of a duplex connection.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait FrameSender: Send {
    /// Sends a frame; waits while the connection's send buffer is full (backpressure).
    ///
    /// Errors: [`TransportError::Closed`] once either side closed.
    async fn send(&mut self, frame: Frame) -> Result<(), TransportError>;

    /// Closes the connection with a code and reason (WebSocket close semantics). Idempotent.
    async fn close(&mut self, code: u16, reason: &str) -> Result<(), TransportError>;
}

/// The receiving half of a duplex connection.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait FrameReceiver: Send {
    /// The next frame; `Ok(None)` once the peer closed the connection cleanly.
    ///
    /// Cancel-safe: dropping the future loses no frame.
    async fn recv(&mut self) -> Result<Option<Frame>, TransportError>;
}

/// An open duplex connection, split so that two tasks can drive the two directions.
pub struct DuplexConnection {
    /// Sends frames.
    pub sender: Box<dyn FrameSender>,
    /// Receives frames.
    pub receiver: Box<dyn FrameReceiver>,
}

impl fmt::Debug for DuplexConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DuplexConnection")
    }
}

/// Opens duplex framed connections: WebSocket, gRPC bidirectional streaming.
///
/// The connection comes split, so one task can read while another writes; dropping both
/// halves closes it. Backpressure: [`FrameSender::send`] waits while the send buffer is full.
///
/// # Example
///
/// ```
/// use courier_traits::transport::{DuplexTransport, Frame, TransportError};
///
/// async fn hello(t: &dyn DuplexTransport) -> Result<Option<Frame>, TransportError> {
///     let mut conn = t.connect("/ws", vec![("Authorization".into(), "Bearer t".into())]).await?;
///     conn.sender.send(Frame::Text(r#"{"type":"ping"}"#.into())).await?;
///     let reply = conn.receiver.recv().await?;
///     conn.sender.close(1000, "done").await?;
///     Ok(reply)
/// }
/// ```
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait DuplexTransport: Send + Sync {
    /// Connects to `target` (a path relative to the transport's base, e.g. `/ws?token=..`),
    /// sending `headers` with the handshake.
    async fn connect(
        &self,
        target: &str,
        headers: Headers,
    ) -> Result<DuplexConnection, TransportError>;
}

/// Errors of a transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The connection could not be established.
    #[error("cannot connect to {target}: {message}")]
    Connect {
        /// Where to.
        target: String,
        /// Why.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// No answer within the timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The server refused the request with a status that says why (used by SDKs that turn an
    /// unexpected status into an error).
    #[error("server answered {status}: {message}")]
    Status {
        /// The status.
        status: u16,
        /// The server's explanation, if any.
        message: String,
        /// The server's `Retry-After` hint.
        retry_after: Option<Duration>,
    },
    /// An RPC protocol (gRPC) refused the call with a status code of its own, whose retry class
    /// the protocol defines: an HTTP status cannot carry it (gRPC's `Aborted` is worth
    /// retrying, its `Internal` is not, while their HTTP equivalents 409 and 500 say the
    /// opposite).
    #[error("call refused with code {code}: {message}")]
    Rpc {
        /// The protocol's status code (gRPC: `google.rpc.Code`, e.g. 14 for `Unavailable`).
        code: i32,
        /// The code's name and the server's explanation.
        message: String,
        /// Whether the protocol says a later attempt may succeed.
        retryable: bool,
        /// The server's pushback hint, if any.
        retry_after: Option<Duration>,
    },
    /// The connection is closed.
    #[error("connection closed")]
    Closed,
    /// The peer broke the protocol (malformed frame, oversized body).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// An I/O error on an established connection.
    #[error("connection broken: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent a message larger than the receiver accepts (WebSocket close code 1009).
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The message's size, as far as it is known (a frame header announces it).
        size: usize,
        /// The receiver's limit.
        limit: usize,
    },
}

impl TransportError {
    fn body_too_large(size: usize, limit: usize) -> TransportError {
        TransportError::Protocol(format!(
            "response body of {size} bytes exceeds the limit of {limit}"
        ))
    }

    /// Whether an HTTP status is worth retrying: 408, 425, 429 and 5xx except 501 and 505.
    pub fn status_is_retryable(status: u16) -> bool {
        matches!(status, 408 | 425 | 429)
            || (500..600).contains(&status) && !matches!(status, 501 | 505)
    }
}

impl Classify for TransportError {
    fn class(&self) -> ErrorClass {
        match self {
            TransportError::Connect { .. }
            | TransportError::Timeout(_)
            | TransportError::Closed => ErrorClass::TRANSIENT,
            TransportError::Io(_) => ErrorClass::TRANSIENT,
            TransportError::Status {
                status,
                retry_after,
                ..
            } if TransportError::status_is_retryable(*status) => ErrorClass::Transient {
                retry_after: *retry_after,
            },
            TransportError::Rpc {
                retryable: true,
                retry_after,
                ..
            } => ErrorClass::Transient {
                retry_after: *retry_after,
            },
            TransportError::Status { .. }
            | TransportError::Rpc { .. }
            | TransportError::Protocol(_)
            | TransportError::TooLarge { .. } => ErrorClass::Permanent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rpc_refusal_classifies_as_its_protocol_says() {
        let hint = Some(Duration::from_millis(250));
        let rpc = |retryable| TransportError::Rpc {
            code: 10,
            message: "Aborted: lost a race".into(),
            retryable,
            retry_after: hint,
        };
        assert_eq!(
            rpc(true).class(),
            ErrorClass::Transient { retry_after: hint }
        );
        assert_eq!(rpc(false).class(), ErrorClass::Permanent);
    }

    #[test]
    fn status_classification() {
        let status = |s| TransportError::Status {
            status: s,
            message: String::new(),
            retry_after: None,
        };
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(status(s).is_retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 501] {
            assert!(!status(s).is_retryable(), "{s}");
        }
        let hinted = TransportError::Status {
            status: 503,
            message: String::new(),
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(hinted.class().retry_after(), Some(Duration::from_secs(3)));
    }

    #[tokio::test]
    async fn collect_enforces_limit() {
        let chunks = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Ok(Bytes::from_static(b"def")),
        ]);
        let body = ResponseBody::Stream(chunks.boxed());
        assert!(body.collect(5).await.is_err());
        let chunks = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Ok(Bytes::from_static(b"def")),
        ]);
        let body = ResponseBody::Stream(chunks.boxed());
        assert_eq!(&body.collect(6).await.expect("fits")[..], b"abcdef");
    }

    #[test]
    fn header_lookup_is_case_insensitive() {
        let h: Headers = vec![("Stream-Next-Offset".into(), "42".into())];
        assert_eq!(header(&h, "stream-next-offset"), Some("42"));
        assert_eq!(header(&h, "etag"), None);
    }
}
