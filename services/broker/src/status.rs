//! How broker errors become gRPC statuses.

use courier_traits::error::InvalidInput;
use tonic::Status;

/// `InvalidArgument`, its message naming the field and the value (spec §2 "Codes").
pub(crate) fn invalid_argument(error: InvalidInput) -> Status {
    Status::invalid_argument(error.to_string())
}

/// A catalog refusal or failure as the client must see it (spec §2 "Codes").
pub(crate) fn catalog_status(error: crate::catalog::CatalogError) -> Status {
    use crate::catalog::CatalogError;
    use courier_traits::error::Classify;
    match &error {
        CatalogError::DispatchMismatch { .. } => Status::failed_precondition(error.to_string()),
        CatalogError::PartitionConflict { .. } => Status::already_exists(error.to_string()),
        _ if error.is_retryable() => Status::unavailable(error.to_string()),
        _ => Status::internal(error.to_string()),
    }
}

/// A failed publish: retryable failures are `Unavailable` (the client retries).
pub(crate) fn write_status(error: crate::writer::WriteError) -> Status {
    use courier_traits::error::Classify;
    use courier_traits::storage::StorageError;
    if error.is_retryable() {
        return Status::unavailable(error.to_string());
    }
    match &error {
        crate::writer::WriteError::Storage { source, .. }
            if matches!(**source, StorageError::TooLarge { .. }) =>
        {
            Status::invalid_argument(error.to_string())
        }
        _ => Status::internal(error.to_string()),
    }
}
