//! Postgres errors as Courier errors: connection trouble, contention and shutdown are
//! retryable, the rest is not. Shared by the storage and the bus.

use courier_traits::storage::StorageError;

/// Whether retrying may help: connection trouble, a server restarting or out of resources,
/// a serialization failure or deadlock. Shared by the storage's and the bus's error mapping.
pub(crate) fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception; 40001/40P01: serialization/deadlock; 53: resources;
            // 57P0x: server shutting down or restarting.
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || code == "40001"
                || code == "40P01"
        }),
        _ => false,
    }
}

/// Maps a database error: connection trouble, contention and shutdown are retryable.
pub(crate) fn db_error(error: sqlx::Error) -> StorageError {
    StorageError::backend(
        is_transient(&error),
        format!("postgres: {error}"),
        Some(Box::new(error)),
    )
}
