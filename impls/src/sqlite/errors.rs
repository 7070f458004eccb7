//! SQLite errors as Courier errors: contention and I/O are retryable, the rest is not.

use courier_traits::storage::StorageError;

/// Maps a database error: contention and I/O are retryable, the rest is not.
pub(crate) fn db_error(error: sqlx::Error) -> StorageError {
    let retryable = match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes.
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i64>().ok())
            .is_some_and(|c| matches!(c & 0xff, 5 | 6)),
        _ => false,
    };
    StorageError::backend(retryable, format!("sqlite: {error}"), Some(Box::new(error)))
}
