//! SQLite errors as Courier errors: contention and I/O are retryable, the rest is not.

use courier_traits::storage::StorageError;
use rusqlite::ErrorCode;

/// Maps a database error: contention (`SQLITE_BUSY`, `SQLITE_LOCKED`), a full disk and I/O
/// errors are retryable, the rest is not.
pub(crate) fn db_error(error: rusqlite::Error) -> StorageError {
    let retryable = matches!(
        error.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
        )
    );
    StorageError::backend(retryable, format!("sqlite: {error}"), Some(Box::new(error)))
}

/// The error every call answers once the storage is closed (or its threads are gone).
pub(super) fn storage_closed() -> StorageError {
    StorageError::Unavailable {
        message: "sqlite storage is closed".into(),
        source: None,
    }
}
