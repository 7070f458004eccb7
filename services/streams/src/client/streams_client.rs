//! [`StreamsClient`]: the client's requests (create, append, close, read, head, delete), how
//! they are sent and retried, and what every response is checked for.
//!
//! Subscriptions and producers, built from a client, live in `subscribe.rs` and
//! `producer.rs`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use courier_impls::http::HttpTransport;
use courier_impls::retry::{ExponentialBackoff, Jitter, Retry};
use courier_traits::retry::RetryPolicy;
use courier_traits::storage::{Offset, StreamName};
use courier_traits::transport::{Method, Request, RequestTransport, Response};
use courier_traits::{Classify, TransportError};

use super::error::ClientError;

use crate::protocol;

/// Largest response body the client reads whole.
pub(super) const MAX_BODY_BYTES: usize = 256 << 20;

/// A client of one Durable Streams server. Cheap to clone.
#[derive(Clone)]
pub struct StreamsClient {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Arc<dyn RequestTransport>,
    retry: Arc<dyn RetryPolicy>,
    long_poll_timeout: Duration,
}

/// How to create a stream.
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    /// Content type (`application/octet-stream` if unset).
    pub content_type: Option<String>,
    /// Idle time-to-live.
    pub ttl: Option<Duration>,
    /// Absolute expiry.
    pub expires_at: Option<SystemTime>,
    /// Create it already closed.
    pub closed: bool,
    /// Initial data.
    pub initial: Bytes,
}

impl CreateOptions {
    /// A stream of this content type.
    pub fn content_type(content_type: impl Into<String>) -> CreateOptions {
        CreateOptions {
            content_type: Some(content_type.into()),
            ..CreateOptions::default()
        }
    }
}

/// What a create did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Created {
    /// True if the stream is new (201), false if it existed with the same config (200).
    pub created: bool,
    /// The tail.
    pub next_offset: String,
}

/// One read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadResult {
    /// The bytes (a JSON array for JSON streams).
    pub data: Bytes,
    /// Where to read next.
    pub next_offset: String,
    /// True if this reached the tail.
    pub up_to_date: bool,
    /// True if the stream is closed and this reached its end.
    pub closed: bool,
}

/// A stream's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamMeta {
    /// Content type.
    pub content_type: String,
    /// The tail.
    pub next_offset: String,
    /// True once closed.
    pub closed: bool,
    /// The configured TTL, in seconds.
    pub ttl_seconds: Option<u64>,
    /// The absolute expiry, as the server formats it (RFC 3339).
    pub expires_at: Option<String>,
}

impl StreamsClient {
    /// A client over `transport`. Default retry policy: exponential backoff from 100 ms to
    /// 5 s with full jitter, giving up after 60 s.
    pub fn new(transport: Arc<dyn RequestTransport>) -> StreamsClient {
        let retry = ExponentialBackoff::new(Duration::from_millis(100))
            .cap(Duration::from_secs(5))
            .jitter(Jitter::Full)
            .unlimited()
            .max_elapsed(Duration::from_secs(60));
        StreamsClient {
            inner: Arc::new(Inner {
                transport,
                retry: Arc::new(retry),
                long_poll_timeout: Duration::from_secs(30),
            }),
        }
    }

    /// A client of the server at `base_url` (`http://host:port`) over [`HttpTransport`].
    pub fn http(base_url: &str) -> Result<StreamsClient, ClientError> {
        Ok(StreamsClient::new(Arc::new(HttpTransport::new(base_url)?)))
    }

    /// Uses `policy` for retries of safe requests and for reconnecting subscriptions.
    pub fn with_retry(self, policy: impl RetryPolicy + 'static) -> StreamsClient {
        self.rebuild(|inner| inner.retry = Arc::new(policy))
    }

    /// The server's long-poll timeout, if longer than the default 30 s: requests wait that
    /// long plus a margin before the client calls them lost.
    pub fn with_long_poll_timeout(self, timeout: Duration) -> StreamsClient {
        self.rebuild(|inner| inner.long_poll_timeout = timeout)
    }

    fn rebuild(self, change: impl FnOnce(&mut Inner)) -> StreamsClient {
        let mut inner = Inner {
            transport: self.inner.transport.clone(),
            retry: self.inner.retry.clone(),
            long_poll_timeout: self.inner.long_poll_timeout,
        };
        change(&mut inner);
        StreamsClient {
            inner: Arc::new(inner),
        }
    }

    /// Creates `stream` (idempotent: an equal config answers `created: false`).
    pub async fn create(
        &self,
        stream: &str,
        options: CreateOptions,
    ) -> Result<Created, ClientError> {
        let mut request = Request::new(Method::Put, path(stream)?).body(options.initial.clone());
        if let Some(ct) = &options.content_type {
            request = request.header("content-type", ct);
        }
        if let Some(ttl) = options.ttl {
            request = request.header(protocol::TTL, ttl.as_secs().to_string());
        }
        if let Some(at) = options.expires_at {
            request = request.header(protocol::EXPIRES_AT, protocol::format_expires_at(at));
        }
        if options.closed {
            request = request.header(protocol::CLOSED, "true");
        }
        // Create is idempotent, so it is retried.
        let response = self.send_retrying(stream, request).await?;
        Ok(Created {
            created: response.status == 201,
            next_offset: next_offset(&response)?,
        })
    }

    /// Appends `data` once (no automatic retry: without a producer stamp a retry could write
    /// twice; use a [`Producer`](super::Producer) for safe retries). Returns the new tail.
    pub async fn append(
        &self,
        stream: &str,
        content_type: &str,
        data: impl Into<Bytes>,
    ) -> Result<String, ClientError> {
        let request = Request::new(Method::Post, path(stream)?)
            .header("content-type", content_type)
            .body(data.into());
        let response = self.send_once(stream, request).await?;
        next_offset(&response)
    }

    /// Closes `stream` (idempotent). Returns the final offset.
    pub async fn close(&self, stream: &str) -> Result<String, ClientError> {
        let request = Request::new(Method::Post, path(stream)?).header(protocol::CLOSED, "true");
        let response = self.send_retrying(stream, request).await?;
        next_offset(&response)
    }

    /// Reads one response's worth of data after `offset` (`None` = from the start).
    pub async fn read(
        &self,
        stream: &str,
        offset: Option<&str>,
    ) -> Result<ReadResult, ClientError> {
        let offset = check_offset(offset)?;
        let target = format!("{}?offset={offset}", path(stream)?);
        let response = self
            .send_retrying(stream, Request::new(Method::Get, target))
            .await?;
        let up_to_date = response.header(protocol::UP_TO_DATE) == Some("true");
        let closed = response.header(protocol::CLOSED) == Some("true");
        let next_offset = next_offset(&response)?;
        let data = response.body.collect(MAX_BODY_BYTES).await?;
        Ok(ReadResult {
            data,
            next_offset,
            up_to_date,
            closed,
        })
    }

    /// The stream's metadata.
    pub async fn head(&self, stream: &str) -> Result<StreamMeta, ClientError> {
        let response = self
            .send_retrying(stream, Request::new(Method::Head, path(stream)?))
            .await?;
        Ok(StreamMeta {
            content_type: response
                .header("content-type")
                .unwrap_or(courier_traits::storage::DEFAULT_CONTENT_TYPE)
                .to_owned(),
            next_offset: next_offset(&response)?,
            closed: response.header(protocol::CLOSED) == Some("true"),
            ttl_seconds: response.header(protocol::TTL).and_then(|t| t.parse().ok()),
            expires_at: response.header(protocol::EXPIRES_AT).map(str::to_owned),
        })
    }

    /// Deletes `stream`.
    pub async fn delete(&self, stream: &str) -> Result<(), ClientError> {
        self.send_once(stream, Request::new(Method::Delete, path(stream)?))
            .await
            .map(drop)
    }

    /// Sends a request that is safe to repeat, retrying retryable failures.
    async fn send_retrying(&self, stream: &str, request: Request) -> Result<Response, ClientError> {
        let retry = Retry::new(self.inner.retry.clone());
        retry
            .run(|_| self.send_once(stream, request.clone()))
            .await
            .map_err(|e| {
                e.into_last_error()
                    .unwrap_or(ClientError::Transport(TransportError::Closed))
            })
    }

    /// Sends once; a status outside 2xx/304 becomes the matching error.
    pub(super) async fn send_once(
        &self,
        stream: &str,
        request: Request,
    ) -> Result<Response, ClientError> {
        let response = self.inner.transport.send(request).await?;
        if (200..300).contains(&response.status) || response.status == 304 {
            Ok(response)
        } else {
            Err(status_error(stream, response).await)
        }
    }

    pub(crate) fn retry_policy(&self) -> Arc<dyn RetryPolicy> {
        self.inner.retry.clone()
    }

    pub(crate) fn long_poll_timeout(&self) -> Duration {
        self.inner.long_poll_timeout
    }
}

/// The request path of a stream, validating the name.
pub(crate) fn path(stream: &str) -> Result<String, ClientError> {
    StreamName::new(stream).map_err(|e| ClientError::InvalidInput {
        what: "stream name",
        value: stream.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(format!("{}{stream}", protocol::STREAM_PATH_PREFIX))
}

/// The offset to send: a sentinel or a well-formed offset (so it is URL-safe as is).
pub(crate) fn check_offset(offset: Option<&str>) -> Result<&str, ClientError> {
    match offset {
        None => Ok(protocol::OFFSET_START),
        Some(o @ (protocol::OFFSET_START | protocol::OFFSET_NOW)) => Ok(o),
        Some(o) => Offset::parse(o)
            .map(|_| o)
            .map_err(|e| ClientError::InvalidInput {
                what: "offset",
                value: o.to_owned(),
                reason: e.to_string(),
            }),
    }
}

pub(crate) fn next_offset(response: &Response) -> Result<String, ClientError> {
    response
        .header(protocol::NEXT_OFFSET)
        .map(str::to_owned)
        .ok_or_else(|| {
            ClientError::Protocol(format!(
                "{} response without Stream-Next-Offset",
                response.status
            ))
        })
}

/// The error an unsuccessful response stands for.
pub(crate) async fn status_error(stream: &str, response: Response) -> ClientError {
    let status = response.status;
    let (closed, final_offset, epoch, gap, retry_after) = {
        let number = |name: &str| response.header(name).and_then(|v| v.parse::<u64>().ok());
        (
            response.header(protocol::CLOSED) == Some("true"),
            response.header(protocol::NEXT_OFFSET).map(str::to_owned),
            number(protocol::PRODUCER_EPOCH),
            number(protocol::PRODUCER_EXPECTED_SEQ).zip(number(protocol::PRODUCER_RECEIVED_SEQ)),
            number("retry-after").map(Duration::from_secs),
        )
    };
    let message = match response.body.collect(64 << 10).await {
        Ok(body) => String::from_utf8_lossy(&body).into_owned(),
        Err(e) => e.to_string(),
    };
    let stream = stream.to_owned();
    match status {
        404 => ClientError::NotFound { stream },
        410 => ClientError::Gone { stream },
        403 if epoch.is_some() => ClientError::StaleEpoch {
            current: epoch.unwrap_or_default(),
        },
        409 if closed => ClientError::Closed {
            stream,
            final_offset: final_offset.unwrap_or_default(),
        },
        409 if gap.is_some() => {
            let (expected, received) = gap.unwrap_or_default();
            ClientError::SequenceGap { expected, received }
        }
        s if TransportError::status_is_retryable(s) => ClientError::Unavailable {
            status,
            stream,
            message,
            retry_after,
        },
        _ => ClientError::Rejected {
            status,
            stream,
            message,
        },
    }
}

/// True if a failed append is safe to send again without a producer stamp: the request never
/// reached the server.
pub(crate) fn never_sent(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::Transport(TransportError::Connect { .. })
    ) && error.is_retryable()
}
