//! Why a registry operation failed, and the gRPC status each failure is (spec §4).

use courier_traits::error::{Classify, ErrorClass};
use courier_traits::storage::StorageError;
use tonic::Status;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// A request field is malformed (`InvalidArgument`).
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidArgument {
        /// The field.
        field: &'static str,
        /// Its value, shortened.
        value: String,
        /// What it must be.
        reason: String,
    },
    /// A subject, version or topic configuration that does not exist (`NotFound`).
    #[error("{0}")]
    NotFound(String),
    /// The request is well formed but the registry's state refuses it
    /// (`FailedPrecondition`), with every reason found.
    #[error("{message}{}", format_reasons(.reasons))]
    FailedPrecondition {
        /// What was refused.
        message: String,
        /// Why, one entry per rule broken.
        reasons: Vec<String>,
    },
    /// Other nodes kept appending to the registry first (retryable, `Unavailable`).
    #[error("the schema registry kept changing; try again")]
    Contended,
    /// The storage failed.
    #[error("schema registry storage: {0}")]
    Storage(#[from] StorageError),
    /// A record of the registry's stream is not an event.
    #[error("record {index} of broker/schemas is corrupt: {reason}")]
    Corrupt {
        /// Its index in the stream.
        index: u64,
        /// Why it does not read.
        reason: String,
    },
}

fn format_reasons(reasons: &[String]) -> String {
    if reasons.is_empty() {
        String::new()
    } else {
        format!(": {}", reasons.join("; "))
    }
}

/// Longest value echoed in an error message, in characters.
const ECHOED_VALUE_CHARS: usize = 80;

impl RegistryError {
    /// An `InvalidArgument` for `field` holding `value`.
    pub fn invalid(field: &'static str, value: &str, reason: impl Into<String>) -> RegistryError {
        let mut shown: String = value.chars().take(ECHOED_VALUE_CHARS).collect();
        if shown.len() < value.len() {
            shown.push('…');
        }
        RegistryError::InvalidArgument {
            field,
            value: shown,
            reason: reason.into(),
        }
    }

    /// A `FailedPrecondition` without a list of reasons.
    pub fn precondition(message: impl Into<String>) -> RegistryError {
        RegistryError::FailedPrecondition {
            message: message.into(),
            reasons: Vec::new(),
        }
    }
}

impl Classify for RegistryError {
    fn class(&self) -> ErrorClass {
        match self {
            RegistryError::Storage(error) => error.class(),
            RegistryError::Contended => ErrorClass::TRANSIENT,
            _ => ErrorClass::Permanent,
        }
    }
}

impl From<RegistryError> for Status {
    fn from(error: RegistryError) -> Status {
        let message = error.to_string();
        match error {
            RegistryError::InvalidArgument { .. } => Status::invalid_argument(message),
            RegistryError::NotFound(_) => Status::not_found(message),
            RegistryError::FailedPrecondition { .. } => Status::failed_precondition(message),
            RegistryError::Contended => Status::unavailable(message),
            RegistryError::Storage(ref storage) if storage.is_retryable() => {
                Status::unavailable(message)
            }
            RegistryError::Storage(_) | RegistryError::Corrupt { .. } => Status::internal(message),
        }
    }
}
