//! Redis errors as Courier errors: connection trouble is retryable, the rest is not.

use courier_traits::bus::BusError;
use courier_traits::storage::StorageError;
use redis::{ErrorKind, RedisError, ServerErrorKind};

/// Connection trouble, and a server still loading its data after a restart (the error's kind,
/// not its text: the client renders `LOADING` replies as `BusyLoading: ...`).
pub(super) fn is_transient(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || matches!(
            error.kind(),
            ErrorKind::Server(ServerErrorKind::BusyLoading)
        )
}

pub(super) fn bus_error(what: &str, error: RedisError) -> BusError {
    BusError::backend(
        is_transient(&error),
        format!("redis {what}: {error}"),
        Some(Box::new(error)),
    )
}

pub(super) fn storage_error(what: &str, error: RedisError) -> StorageError {
    StorageError::backend(
        is_transient(&error),
        format!("redis {what}: {error}"),
        Some(Box::new(error)),
    )
}
