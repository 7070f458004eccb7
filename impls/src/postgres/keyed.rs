//! Keyed appends on Postgres, in the caller's transaction after it locked the stream row (so
//! keyed appends to one stream take turns, and each statement after the lock sees the keys the
//! previous holder committed): the stream's expired keys are dropped and the live ones among
//! the request's read in one statement, then records, keys, tail and notification in another.

use std::collections::HashMap;
use std::time::Duration;

use courier_traits::storage::{KeyedOutcome, KeyedRecord, StorageError, StreamName};
use sqlx::{PgConnection, Row};

use super::errors::db_error;
use crate::rules::{StoredKey, index_offset, plan_keyed, window_ms};
use crate::sql_model::StreamRow;

/// Drops the stream's expired keys and looks up the given ones. Each half reaches exactly one
/// index whatever the planner's statistics say (schema step 3): the lookup the primary key
/// `(key, stream)`, whose leading column is the looked-up key; the expiry the
/// `(stream COLLATE "C", committed_ms)` index, which only a "C"-collated comparison matches.
/// With `(stream, key)` and `(stream, committed_ms)`, a stream new to the statistics was
/// estimated at one row and its lookups scanned every key of the stream (9 ms per call at 50 k
/// keys, linear in them).
pub const LOOKUP: &str = r#"WITH expired AS (
         DELETE FROM courier_dedup_keys WHERE stream COLLATE "C" = $1 AND committed_ms <= $2
     )
     SELECT key, tag, committed_ms FROM courier_dedup_keys WHERE stream = $1 AND key = ANY($3)"#;

/// Applies a keyed append to `name`, whose live `row` the transaction holds locked, at `now`
/// (milliseconds on the storage's clock); also says whether anything was written (the caller
/// notifies after the commit).
pub(super) async fn append_keyed(
    conn: &mut PgConnection,
    name: &StreamName,
    row: &StreamRow,
    records: Vec<KeyedRecord>,
    window: Duration,
    now: i64,
) -> Result<(Vec<KeyedOutcome>, bool), StorageError> {
    if row.closed {
        return Err(StorageError::Closed {
            stream: name.clone(),
            next_offset: index_offset::encode(row.next_index),
        });
    }
    let window_ms_i64 = i64::try_from(window_ms(window)).unwrap_or(i64::MAX);
    let keys: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
    // The SELECT sees the table as the statement started (before its own DELETE), so an
    // expired key may still be returned; the plan judges it expired by the same boundary.
    let rows = sqlx::query(LOOKUP)
        .bind(name.as_str())
        .bind(now.saturating_sub(window_ms_i64))
        .bind(&keys)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
    let mut stored: HashMap<String, StoredKey> = HashMap::with_capacity(rows.len());
    for row in &rows {
        let committed_ms: i64 = row.try_get("committed_ms").map_err(db_error)?;
        stored.insert(
            row.try_get("key").map_err(db_error)?,
            StoredKey {
                tag: row.try_get("tag").map_err(db_error)?,
                committed_ms: u64::try_from(committed_ms).unwrap_or(0),
            },
        );
    }
    let plan = plan_keyed(
        &records,
        |key| stored.get(key).cloned(),
        u64::try_from(now).unwrap_or(0),
        window,
    );
    let first = row.next_index;
    if plan.write_count() > 0 {
        let written: Vec<&KeyedRecord> = plan.written(&records).collect();
        let indexes: Vec<i64> = (0..written.len() as u64)
            .map(|i| (first + i) as i64)
            .collect();
        let payloads: Vec<&[u8]> = written.iter().map(|r| &r.data[..]).collect();
        let new_keys: Vec<&str> = written.iter().map(|r| r.key.as_str()).collect();
        let tags: Vec<&str> = written.iter().map(|r| r.tag.as_str()).collect();
        // A key the clock left behind (committed "in the future", then a zero window) may
        // still be there: the newest commit replaces it. Data-modifying CTEs all run.
        sqlx::query(
            "WITH records AS (
                 INSERT INTO courier_records (stream, idx, data)
                 SELECT $1, * FROM unnest($2::BIGINT[], $3::BYTEA[])
             ), keys AS (
                 INSERT INTO courier_dedup_keys (stream, key, tag, committed_ms)
                 SELECT $1, k, t, $6 FROM unnest($4::TEXT[], $5::TEXT[]) AS u(k, t)
                 ON CONFLICT (stream, key) DO UPDATE
                     SET tag = excluded.tag, committed_ms = excluded.committed_ms
             )
             UPDATE courier_streams SET next_index = $7, last_access_ms = $6 WHERE name = $1",
        )
        .bind(name.as_str())
        .bind(&indexes)
        .bind(&payloads)
        .bind(&new_keys)
        .bind(&tags)
        .bind(now)
        .bind((first + plan.write_count()) as i64)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    }
    let wrote = plan.write_count() > 0;
    Ok((plan.outcomes(|n| index_offset::encode(first + n)), wrote))
}
