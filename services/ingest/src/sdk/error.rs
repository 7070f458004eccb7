//! The SDK's errors: building a client, tracking an event, flushing, and the delivery failures
//! handed to `on_error`.

use courier_traits::error::{Classify, ErrorClass};
use courier_traits::transport::TransportError;

/// A builder input was rejected; `field` names it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// An input is out of range or malformed.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The builder input (`batch_size`, `endpoint`, `app_id`, ...).
        field: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// `build()` was called outside a tokio runtime: the client needs one for its worker task.
    #[error("IngestClientBuilder::build must be called within a tokio runtime")]
    NoRuntime,
}

impl Classify for ConfigError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }
}

/// Why `track` did not take an event. Every case is counted in [`Stats::dropped`](super::Stats).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrackError {
    /// The queue holds `queue_capacity` events: the newest (this one) is dropped rather than
    /// blocking the caller.
    #[error("queue full ({capacity} events): event dropped")]
    QueueFull {
        /// The queue's capacity.
        capacity: usize,
    },
    /// The encoded event exceeds `max_event_bytes`.
    #[error("event of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The encoded size.
        size: usize,
        /// `max_event_bytes`.
        limit: usize,
    },
    /// The client was closed (or dropped its worker).
    #[error("client is closed")]
    Closed,
    /// The event would be rejected by the server for its content, or a builder call did not
    /// fit its payload.
    #[error("invalid event field {field}: {reason}")]
    InvalidEvent {
        /// The field (`custom_event.event_name`, `param`, ...).
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl Classify for TrackError {
    fn class(&self) -> ErrorClass {
        match self {
            // The queue drains as the worker delivers.
            TrackError::QueueFull { .. } => ErrorClass::TRANSIENT,
            TrackError::TooLarge { .. } | TrackError::Closed | TrackError::InvalidEvent { .. } => {
                ErrorClass::Permanent
            }
        }
    }
}

/// Why `flush` could not wait for the events queued before it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlushError {
    /// The client was closed before those events were delivered or failed; `close`'s report
    /// counts them.
    #[error("client closed before the flush completed")]
    Closed,
}

impl Classify for FlushError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }
}

/// A delivery failure, as the `on_error` callback sees it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The server answered a terminal status (a 4xx other than 408, 429 and 413, a 413 for a
    /// single event, or a 501/505); the batch's events are counted as failed.
    #[error("server refused a batch of {events} events with {status}: {message}")]
    Refused {
        /// How many events the batch held.
        events: usize,
        /// The status.
        status: u16,
        /// The start of the server's body.
        message: String,
    },
    /// Retries ran out (or the policy gave up) on a retryable failure; the batch's events are
    /// counted as failed.
    #[error("batch of {events} events failed after {attempts} attempts: {error}")]
    RetriesExhausted {
        /// How many events the batch held.
        events: usize,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        #[source]
        error: TransportError,
    },
    /// The server accepted the batch but rejected this event (a per-event result in a 200).
    #[error("event {index} (idempotency key {idempotency_key:?}) rejected: {error}")]
    Rejected {
        /// The event's index in its batch.
        index: usize,
        /// The event's idempotency key.
        idempotency_key: String,
        /// The server's reason.
        error: String,
    },
}
