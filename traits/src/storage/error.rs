//! Errors of [`StreamStorage`](super::StreamStorage), each with its class (retryable or not).

use super::names::{Offset, StreamName};
use crate::error::{BoxError, Classify, ErrorClass, InvalidInput};

/// Errors of a [`StreamStorage`](super::StreamStorage). Only
/// [`StorageError::Unavailable`] is retryable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A name, offset, stamp or size was rejected.
    #[error(transparent)]
    InvalidInput(#[from] InvalidInput),
    /// No such stream (or it expired).
    #[error("stream {stream} not found")]
    NotFound {
        /// The stream.
        stream: StreamName,
    },
    /// The stream was deleted but is kept for live forks; it accepts nothing.
    #[error("stream {stream} was deleted")]
    Gone {
        /// The stream.
        stream: StreamName,
    },
    /// The stream exists with a different configuration.
    #[error("stream {stream} exists with a different configuration: {reason}")]
    ConfigConflict {
        /// The stream.
        stream: StreamName,
        /// Which part differs.
        reason: String,
    },
    /// The fork source does not exist.
    #[error("fork source {source_stream} not found")]
    ForkSourceNotFound {
        /// The source stream.
        source_stream: StreamName,
    },
    /// The fork source was deleted.
    #[error("fork source {source_stream} was deleted")]
    ForkSourceGone {
        /// The source stream.
        source_stream: StreamName,
    },
    /// The offset was not issued by this stream, or lies beyond its tail.
    #[error("offset {offset} is not a position of stream {stream}")]
    UnknownOffset {
        /// The stream.
        stream: StreamName,
        /// The offset.
        offset: Offset,
    },
    /// The stream is closed; nothing more can be appended.
    #[error("stream {stream} is closed at {next_offset}")]
    Closed {
        /// The stream.
        stream: StreamName,
        /// Its final offset.
        next_offset: Offset,
    },
    /// The append's content type differs from the stream's.
    #[error("content type {received:?} does not match the stream's {expected:?}")]
    ContentTypeMismatch {
        /// The stream's content type.
        expected: String,
        /// The append's content type.
        received: String,
    },
    /// The writer sequence did not sort above the last accepted one.
    #[error("writer seq {received:?} is not above the last accepted {last:?}")]
    WriterSeqRegression {
        /// The last accepted writer sequence.
        last: String,
        /// The one received.
        received: String,
    },
    /// A producer wrote with an epoch older than the current one: it has been fenced off.
    #[error("producer epoch {received} is stale; current epoch is {current}")]
    StaleProducerEpoch {
        /// The current epoch.
        current: u64,
        /// The epoch received.
        received: u64,
    },
    /// A producer skipped sequence numbers.
    #[error("producer sequence gap: expected {expected}, received {received}")]
    ProducerSeqGap {
        /// The next sequence the storage expects.
        expected: u64,
        /// The sequence received.
        received: u64,
    },
    /// A producer opened a new epoch with a sequence other than 0.
    #[error("a new producer epoch {epoch} must start at seq 0, not {seq}")]
    ProducerEpochStart {
        /// The new epoch.
        epoch: u64,
        /// The sequence received.
        seq: u64,
    },
    /// A record or request exceeds the storage's limit.
    #[error("{what} of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// What was too large (`record`, `append`).
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// This storage does not offer the operation (its capabilities say which it does).
    #[error("this storage does not support {0}")]
    Unsupported(&'static str),
    /// The backend could not be reached or did not answer in time; retry later.
    #[error("storage unavailable: {message}")]
    Unavailable {
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// The backend failed in a way retrying will not fix.
    #[error("storage backend error: {message}")]
    Backend {
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
}

impl StorageError {
    /// A backend's failure as its class decides: [`StorageError::Unavailable`] when
    /// `retryable` (connection trouble, contention, a restarting server), else
    /// [`StorageError::Backend`]. The twin of `BusError::backend`.
    pub fn backend(
        retryable: bool,
        message: impl Into<String>,
        source: Option<BoxError>,
    ) -> StorageError {
        let message = message.into();
        if retryable {
            StorageError::Unavailable { message, source }
        } else {
            StorageError::Backend { message, source }
        }
    }

    /// The error `create` reports when looking up its fork source failed with `self`: the
    /// source's own `NotFound` / `Gone` become [`StorageError::ForkSourceNotFound`] /
    /// [`StorageError::ForkSourceGone`]; anything else stays as it is.
    pub fn for_fork_source(self, source: &StreamName) -> StorageError {
        match self {
            StorageError::NotFound { .. } => StorageError::ForkSourceNotFound {
                source_stream: source.clone(),
            },
            StorageError::Gone { .. } => StorageError::ForkSourceGone {
                source_stream: source.clone(),
            },
            other => other,
        }
    }

    /// Shorthand for an [`StorageError::Unavailable`] wrapping `source`.
    pub fn unavailable(message: impl Into<String>, source: impl Into<BoxError>) -> StorageError {
        StorageError::Unavailable {
            message: message.into(),
            source: Some(source.into()),
        }
    }
}

impl Classify for StorageError {
    fn class(&self) -> ErrorClass {
        match self {
            StorageError::Unavailable { .. } => ErrorClass::TRANSIENT,
            _ => ErrorClass::Permanent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unavailable_is_retryable() {
        let name = StreamName::new("s").expect("valid");
        let cases: Vec<(StorageError, bool)> = vec![
            (
                StorageError::NotFound {
                    stream: name.clone(),
                },
                false,
            ),
            (
                StorageError::Closed {
                    stream: name,
                    next_offset: Offset::parse("0001").expect("valid"),
                },
                false,
            ),
            (
                StorageError::ProducerSeqGap {
                    expected: 3,
                    received: 5,
                },
                false,
            ),
            (StorageError::backend(false, "broken", None), false),
            (StorageError::backend(true, "down", None), true),
            (
                StorageError::unavailable("down", InvalidInput::new("x", "", "y")),
                true,
            ),
        ];
        for (err, retryable) in cases {
            assert_eq!(err.is_retryable(), retryable, "{err}");
        }
        assert!(matches!(
            StorageError::backend(true, "down", None),
            StorageError::Unavailable { .. }
        ));
        assert!(matches!(
            StorageError::backend(false, "broken", None),
            StorageError::Backend { .. }
        ));
    }

    #[test]
    fn a_fork_source_missing_or_deleted_is_named_as_the_source() {
        let source = StreamName::new("src").expect("valid");
        let missing = StorageError::NotFound {
            stream: source.clone(),
        };
        assert!(matches!(
            missing.for_fork_source(&source),
            StorageError::ForkSourceNotFound { source_stream } if source_stream == source
        ));
        let gone = StorageError::Gone {
            stream: source.clone(),
        };
        assert!(matches!(
            gone.for_fork_source(&source),
            StorageError::ForkSourceGone { source_stream } if source_stream == source
        ));
        assert!(matches!(
            StorageError::backend(true, "down", None).for_fork_source(&source),
            StorageError::Unavailable { .. }
        ));
    }
}
