//! The Postgres side of fork chains (see `crate::sql_forks`): the shared statements, chain links
//! row-locked so concurrent deletes and forks of one chain take turns, and how records are inserted.

use bytes::Bytes;
use courier_traits::storage::{StorageError, StreamName};
use sqlx::PgConnection;

use super::errors::db_error;
use crate::sql_forks::{InsertRecords, fork_statements};

fork_statements!(
    PgConnection,
    " FOR UPDATE",
    // Through the expiry index (see schema.rs: only a "C"-collated comparison reaches it).
    r#"DELETE FROM courier_dedup_keys WHERE stream COLLATE "C" = $1"#,
    db_error
);

impl InsertRecords for PgConnection {
    async fn insert_records(
        &mut self,
        stream: &StreamName,
        first: u64,
        records: &[Bytes],
    ) -> Result<(), StorageError> {
        if records.is_empty() {
            return Ok(());
        }
        // One statement for the whole batch: arrays of indexes and payloads, unnested.
        let indexes: Vec<i64> = (0..records.len() as u64)
            .map(|i| (first + i) as i64)
            .collect();
        let payloads: Vec<&[u8]> = records.iter().map(|r| &r[..]).collect();
        sqlx::query(
            "INSERT INTO courier_records (stream, idx, data)
             SELECT $1, * FROM unnest($2::BIGINT[], $3::BYTEA[])",
        )
        .bind(stream.as_str())
        .bind(&indexes)
        .bind(&payloads)
        .execute(&mut *self)
        .await
        .map_err(db_error)?;
        Ok(())
    }
}
