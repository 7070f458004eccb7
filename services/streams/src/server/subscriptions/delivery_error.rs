//! [`DeliveryError`]: why a webhook delivery attempt failed (its own file: the delivery and
//! its TLS connector both answer with it).

use std::time::Duration;

use courier_traits::error::{Classify, ErrorClass};

/// Why a delivery attempt failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeliveryError {
    /// The URL is refused (unsafe target) or cannot be used; retrying will not help.
    #[error("webhook refused: {0}")]
    Refused(String),
    /// Connecting or talking to the receiver failed.
    #[error("webhook receiver unreachable: {0}")]
    Unreachable(String),
    /// The receiver answered with an error status.
    #[error("webhook receiver answered {0}")]
    Status(u16),
    /// The attempt took longer than the delivery timeout.
    #[error("webhook delivery timed out after {0:?}")]
    TimedOut(Duration),
    /// The wake this delivery was for is over (acknowledged, expired or deleted).
    #[error("the wake was superseded")]
    Superseded,
}

impl Classify for DeliveryError {
    fn class(&self) -> ErrorClass {
        match self {
            DeliveryError::Refused(_) | DeliveryError::Superseded => ErrorClass::Permanent,
            DeliveryError::Unreachable(_)
            | DeliveryError::Status(_)
            | DeliveryError::TimedOut(_) => ErrorClass::TRANSIENT,
        }
    }
}
