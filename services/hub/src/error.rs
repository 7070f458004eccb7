//! [`HubError`]: what hub calls can fail with, each case classified for retries.

use courier_traits::bus::BusError;
use courier_traits::error::{Classify, ErrorClass, InvalidInput};

/// Errors of [`Hub`](crate::Hub) calls.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// No node holds a client with this id.
    #[error("client {0:?} is not connected to any node")]
    ClientNotFound(String),
    /// The client's outbound queue is full: it reads slower than frames arrive.
    #[error("send buffer of client {0:?} is full")]
    SendBufferFull(String),
    /// The hub was shut down.
    #[error("the hub is shut down")]
    Closed,
    /// A client id, frame or setting was rejected.
    #[error(transparent)]
    InvalidInput(#[from] InvalidInput),
    /// The frame is larger than `max_message_bytes`.
    #[error("frame of {size} bytes exceeds max_message_bytes = {limit}")]
    FrameTooLarge {
        /// Frame size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The client is on another node and the cluster bus did not accept the frame.
    #[error("cluster bus unavailable: {0}")]
    Bus(#[source] BusError),
    /// The history storage of a channel failed.
    #[error("channel history storage: {0}")]
    Storage(#[source] courier_traits::storage::StorageError),
    /// The frame was queued but the connection failed before it was written (acked frames).
    #[error("client {0:?} disconnected before the frame was written")]
    NotDelivered(String),
}

impl Classify for HubError {
    fn class(&self) -> ErrorClass {
        match self {
            HubError::SendBufferFull(_) => ErrorClass::TRANSIENT,
            HubError::Bus(e) => e.class(),
            HubError::Storage(e) => e.class(),
            _ => ErrorClass::Permanent,
        }
    }
}

/// Checks a client id: 1 to 128 ASCII letters, digits or `. _ - : @`.
pub fn validate_client_id(id: &str) -> Result<(), InvalidInput> {
    let bad = |reason: &str| InvalidInput::new("client_id", id, reason);
    if id.is_empty() {
        return Err(bad("must not be empty"));
    }
    if id.len() > 128 {
        return Err(bad("longer than 128 bytes"));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '@')))
    {
        return Err(bad(&format!(
            "character {c:?} is not allowed (use A-Z a-z 0-9 . _ - : @)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids() {
        assert!(validate_client_id("alice-1@web").is_ok());
        for bad in ["", "a b", "a/b", &"x".repeat(129)] {
            let err = validate_client_id(bad).expect_err(bad);
            assert_eq!(err.field, "client_id");
        }
    }

    #[test]
    fn only_full_buffers_and_bus_outages_are_retryable() {
        assert!(HubError::SendBufferFull("a".into()).is_retryable());
        assert!(!HubError::ClientNotFound("a".into()).is_retryable());
        assert!(
            HubError::Bus(BusError::Unavailable {
                message: "down".into(),
                source: None
            })
            .is_retryable()
        );
    }
}
