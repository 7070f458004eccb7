//! What parsing one event produces, whatever its shape: the request context it is read in,
//! and the accepted event or the rejection.

use bytes::Bytes;

/// What the request knows about its events before reading them.
#[derive(Debug, Clone, Copy)]
pub struct IngestContext<'a> {
    /// The app of the request's API key; events of another app are rejected.
    pub app_id: &'a str,
    /// When the request arrived, ms since the Unix epoch (stored as `received_ms`).
    pub received_ms: i64,
}

/// A valid event, ready for the keyed append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedEvent {
    /// The client's `id`, or a fresh UUIDv7.
    pub id: String,
    /// The dedup key: the client's `idempotency_key`, or a fresh UUIDv4.
    pub idempotency_key: String,
    /// The stored record: the normalised event as JSON. The records of a batch read in one
    /// pass share one buffer, so handing one to the storage copies nothing.
    pub record: Bytes,
}

/// One event's outcome of parsing and validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOutcome {
    /// Valid; to be stored.
    Valid(AcceptedEvent),
    /// Invalid: the field and the rule (answered inside the 200, the others are stored).
    Rejected(String),
}
