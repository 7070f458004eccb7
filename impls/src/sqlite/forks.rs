//! The SQLite side of fork chains (see `crate::sql_forks`): the shared statements, chain links
//! no row lock: the single writer connection holds the database's, and how records are inserted.

use bytes::Bytes;
use courier_traits::storage::{StorageError, StreamName};
use sqlx::SqliteConnection;

use super::errors::db_error;
use crate::sql_forks::{InsertRecords, fork_statements};

fork_statements!(
    SqliteConnection,
    "",
    "DELETE FROM courier_dedup_keys WHERE stream = $1",
    db_error
);

impl InsertRecords for SqliteConnection {
    async fn insert_records(
        &mut self,
        stream: &StreamName,
        first: u64,
        records: &[Bytes],
    ) -> Result<(), StorageError> {
        for (i, data) in records.iter().enumerate() {
            sqlx::query("INSERT INTO courier_records (stream, idx, data) VALUES (?, ?, ?)")
                .bind(stream.as_str())
                .bind((first + i as u64) as i64)
                .bind(&data[..])
                .execute(&mut *self)
                .await
                .map_err(db_error)?;
        }
        Ok(())
    }
}
