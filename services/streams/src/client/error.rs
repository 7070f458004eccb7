//! Errors of the streams client, classified retryable or permanent.

use std::time::Duration;

use courier_traits::{Classify, ErrorClass, TransportError};

/// What went wrong talking to a Durable Streams server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No response (connect failure, timeout, broken connection).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A stream name or offset the client was given is not valid.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidInput {
        /// Which input.
        what: &'static str,
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// 404: no such stream (or it expired).
    #[error("stream {stream} not found")]
    NotFound {
        /// The stream.
        stream: String,
    },
    /// 410: the stream was deleted.
    #[error("stream {stream} was deleted")]
    Gone {
        /// The stream.
        stream: String,
    },
    /// 409 on a closed stream.
    #[error("stream {stream} is closed at {final_offset}")]
    Closed {
        /// The stream.
        stream: String,
        /// Its final offset.
        final_offset: String,
    },
    /// 403: this producer's epoch was fenced off by a newer one.
    #[error("producer epoch is stale; the stream's current epoch is {current}")]
    StaleEpoch {
        /// The epoch the server holds.
        current: u64,
    },
    /// 409 with `Producer-Expected-Seq`: the producer skipped sequence numbers.
    #[error("producer sequence gap: server expected {expected}, got {received}")]
    SequenceGap {
        /// What the server expected.
        expected: u64,
        /// What was sent.
        received: u64,
    },
    /// Any other refusal (400, 409 config or content-type conflict, 413, ...).
    #[error("server answered {status} for {stream}: {message}")]
    Rejected {
        /// The status.
        status: u16,
        /// The stream.
        stream: String,
        /// The server's explanation.
        message: String,
    },
    /// A 5xx or 429: the server could not do it now.
    #[error("server unavailable ({status}) for {stream}: {message}")]
    Unavailable {
        /// The status.
        status: u16,
        /// The stream.
        stream: String,
        /// The server's explanation.
        message: String,
        /// The server's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// The server's answer broke the protocol (missing header, bad SSE event).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The producer was shut down before the append was sent.
    #[error("the producer is closed")]
    ProducerClosed,
}

impl Classify for ClientError {
    fn class(&self) -> ErrorClass {
        match self {
            ClientError::Transport(e) => e.class(),
            ClientError::Unavailable { retry_after, .. } => ErrorClass::Transient {
                retry_after: *retry_after,
            },
            _ => ErrorClass::Permanent,
        }
    }
}
