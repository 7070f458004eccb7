//! Keyed appends on SQLite: inside one writer job (its own savepoint of the group-commit
//! transaction, which holds the database's write lock), expired keys of the stream are dropped,
//! the live ones among the request's keys are read, and the new records, their keys and the
//! stream's tail are written together.

use std::collections::HashMap;
use std::time::Duration;

use courier_traits::storage::{KeyedOutcome, KeyedRecord, StorageError, StreamName};
use rusqlite::{Connection, OptionalExtension};

use super::batch_append::insert_records;
use super::errors::db_error;
use super::row::load_live;
use crate::rules::{StoredKey, index_offset, plan_keyed, window_ms};

/// Applies a keyed append to `name` at `now` (milliseconds on the storage's clock).
pub(super) fn append_keyed(
    conn: &Connection,
    name: &StreamName,
    records: Vec<KeyedRecord>,
    window: Duration,
    now: i64,
) -> Result<Vec<KeyedOutcome>, StorageError> {
    let row = load_live(conn, name, now)?;
    if row.closed {
        return Err(StorageError::Closed {
            stream: name.clone(),
            next_offset: index_offset::encode(row.next_index),
        });
    }
    let window_ms = i64::try_from(window_ms(window)).unwrap_or(i64::MAX);
    // Expired keys go first, so those left are live and a rewritten key is a plain insert;
    // the (stream, committed_ms) index keeps this a range delete.
    conn.prepare_cached("DELETE FROM courier_dedup_keys WHERE stream = ?1 AND committed_ms <= ?2")
        .and_then(|mut delete| delete.execute((name.as_str(), now.saturating_sub(window_ms))))
        .map_err(db_error)?;
    let stored = stored_keys(conn, name, &records)?;
    let now_u = u64::try_from(now).unwrap_or(0);
    let plan = plan_keyed(&records, |key| stored.get(key).cloned(), now_u, window);
    let first = row.next_index;
    let written: Vec<&KeyedRecord> = plan.written(&records).collect();
    insert_records(conn, name, first, written.iter().map(|r| &r.data[..]))?;
    // A key the clock left behind (committed "in the future", then a zero window) may still be
    // there: the newest commit replaces it.
    let mut upsert = conn
        .prepare_cached(
            "INSERT INTO courier_dedup_keys (stream, key, tag, committed_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (stream, key) DO UPDATE SET tag = excluded.tag, committed_ms = excluded.committed_ms",
        )
        .map_err(db_error)?;
    for record in &written {
        upsert
            .execute((name.as_str(), record.key.as_str(), record.tag.as_str(), now))
            .map_err(db_error)?;
    }
    if plan.write_count() > 0 {
        conn.prepare_cached(
            "UPDATE courier_streams SET next_index = ?1, last_access_ms = ?2 WHERE name = ?3",
        )
        .and_then(|mut update| {
            update.execute(((first + plan.write_count()) as i64, now, name.as_str()))
        })
        .map_err(db_error)?;
    }
    Ok(plan.outcomes(|n| index_offset::encode(first + n)))
}

/// The stored keys of `name` among `records`' keys.
fn stored_keys(
    conn: &Connection,
    name: &StreamName,
    records: &[KeyedRecord],
) -> Result<HashMap<String, StoredKey>, StorageError> {
    let mut keys: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut select = conn
        .prepare_cached(
            "SELECT tag, committed_ms FROM courier_dedup_keys WHERE stream = ?1 AND key = ?2",
        )
        .map_err(db_error)?;
    let mut found = HashMap::new();
    for key in keys {
        let stored = select
            .query_row((name.as_str(), key), |row| {
                Ok(StoredKey {
                    tag: row.get(0)?,
                    committed_ms: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                })
            })
            .optional()
            .map_err(db_error)?;
        if let Some(stored) = stored {
            found.insert(key.to_owned(), stored);
        }
    }
    Ok(found)
}
