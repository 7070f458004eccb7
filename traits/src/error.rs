//! How every Courier error is classified: retry or give up.
//!
//! Each area (bus, storage, transport) has its own `#[non_exhaustive]` error enum. They all
//! implement [`Classify`], so a [`RetryPolicy`](crate::retry::RetryPolicy) and the `retry`
//! driver in `courier-impls` can decide what to do with any of them without knowing which
//! backend produced it.

use std::time::Duration;

/// Whether an error is worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Trying again with the same input fails the same way (bad input, conflict, not found).
    Permanent,
    /// The condition may pass (connection lost, timeout, server overloaded).
    Transient {
        /// The server's hint of when to try again (an HTTP `Retry-After`, a gRPC retry delay).
        retry_after: Option<Duration>,
    },
}

impl ErrorClass {
    /// A transient class without a server hint.
    pub const TRANSIENT: ErrorClass = ErrorClass::Transient { retry_after: None };

    /// True for [`ErrorClass::Transient`].
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorClass::Transient { .. })
    }

    /// The server's retry hint, if any.
    pub fn retry_after(self) -> Option<Duration> {
        match self {
            ErrorClass::Transient { retry_after } => retry_after,
            ErrorClass::Permanent => None,
        }
    }
}

/// Implemented by every Courier error so retry decisions are portable across backends.
pub trait Classify {
    /// Retryable or permanent, with any retry-after hint.
    fn class(&self) -> ErrorClass;

    /// Shorthand for `self.class().is_retryable()`.
    fn is_retryable(&self) -> bool {
        self.class().is_retryable()
    }
}

/// A boxed backend error kept as the `source` of a Courier error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A name or value failed validation: says which input and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} {value:?}: {reason}")]
pub struct InvalidInput {
    /// Which input was rejected (`topic`, `stream name`, `offset`, `Producer-Seq`, ...).
    pub field: &'static str,
    /// The rejected value, truncated to 100 characters.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl InvalidInput {
    /// Builds the error, truncating long values so logs stay readable.
    pub fn new(field: &'static str, value: &str, reason: impl Into<String>) -> Self {
        let value = if value.chars().count() > 100 {
            let cut: String = value.chars().take(100).collect();
            format!("{cut}…")
        } else {
            value.to_owned()
        };
        InvalidInput {
            field,
            value,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_carries_retry_after() {
        let class = ErrorClass::Transient {
            retry_after: Some(Duration::from_secs(2)),
        };
        assert!(class.is_retryable());
        assert_eq!(class.retry_after(), Some(Duration::from_secs(2)));
        assert!(!ErrorClass::Permanent.is_retryable());
        assert_eq!(ErrorClass::Permanent.retry_after(), None);
    }

    #[test]
    fn invalid_input_names_field_and_truncates() {
        let long = "x".repeat(500);
        let err = InvalidInput::new("topic", &long, "too long");
        let text = err.to_string();
        assert!(text.starts_with("invalid topic \"xxx"));
        assert!(text.len() < 200, "{text}");
    }
}
