//! Keyed appends on SQLite: inside one writer job (its own savepoint of the group-commit
//! transaction, which holds the database's write lock), expired keys of the stream are dropped,
//! the live ones among the request's keys are read, and the new records, their keys and the
//! stream's tail are written together.

use std::collections::HashMap;
use std::time::Duration;

use courier_traits::storage::{KeyedOutcome, KeyedRecord, StorageError, StreamName};
use sqlx::{Row, SqliteConnection};

use super::batch_append::values_sql;
use super::errors::db_error;
use super::row::load_live;
use crate::rules::{StoredKey, index_offset, plan_keyed, window_ms};

/// Keys per select, and rows per insert (3 or 4 bound values each, under SQLite's limit).
const ROWS_PER_STATEMENT: usize = 200;

/// Applies a keyed append to `name` at `now` (milliseconds on the storage's clock).
pub(super) async fn append_keyed(
    conn: &mut SqliteConnection,
    name: &StreamName,
    records: Vec<KeyedRecord>,
    window: Duration,
    now: i64,
) -> Result<Vec<KeyedOutcome>, StorageError> {
    let row = load_live(conn, name, now).await?;
    if row.closed {
        return Err(StorageError::Closed {
            stream: name.clone(),
            next_offset: index_offset::encode(row.next_index),
        });
    }
    let window_ms = i64::try_from(window_ms(window)).unwrap_or(i64::MAX);
    // Expired keys go first, so those left are live and a rewritten key is a plain insert;
    // the (stream, committed_ms) index keeps this a range delete.
    sqlx::query("DELETE FROM courier_dedup_keys WHERE stream = ? AND committed_ms <= ?")
        .bind(name.as_str())
        .bind(now.saturating_sub(window_ms))
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    let stored = stored_keys(conn, name, &records).await?;
    let now_u = u64::try_from(now).unwrap_or(0);
    let plan = plan_keyed(&records, |key| stored.get(key).cloned(), now_u, window);
    let first = row.next_index;
    let written: Vec<&KeyedRecord> = plan.written(&records).collect();
    for (chunk_no, chunk) in written.chunks(ROWS_PER_STATEMENT).enumerate() {
        let base = first + (chunk_no * ROWS_PER_STATEMENT) as u64;
        let sql = values_sql(
            "INSERT INTO courier_records (stream, idx, data) VALUES ",
            chunk.len(),
            3,
            "",
        );
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (i, record) in chunk.iter().enumerate() {
            insert = insert
                .bind(name.as_str())
                .bind((base + i as u64) as i64)
                .bind(&record.data[..]);
        }
        insert
            .persistent(chunk.len() == 1)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        // A key the clock left behind (committed "in the future", then a zero window) may
        // still be there: the newest commit replaces it.
        let sql = values_sql(
            "INSERT INTO courier_dedup_keys (stream, key, tag, committed_ms) VALUES ",
            chunk.len(),
            4,
            " ON CONFLICT (stream, key) DO UPDATE SET tag = excluded.tag, committed_ms = excluded.committed_ms",
        );
        let mut upsert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for record in chunk {
            upsert = upsert
                .bind(name.as_str())
                .bind(record.key.as_str())
                .bind(record.tag.as_str())
                .bind(now);
        }
        upsert
            .persistent(chunk.len() == 1)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
    }
    if plan.write_count() > 0 {
        sqlx::query("UPDATE courier_streams SET next_index = ?, last_access_ms = ? WHERE name = ?")
            .bind((first + plan.write_count()) as i64)
            .bind(now)
            .bind(name.as_str())
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
    }
    Ok(plan.outcomes(|n| index_offset::encode(first + n)))
}

/// The stored keys of `name` among `records`' keys.
async fn stored_keys(
    conn: &mut SqliteConnection,
    name: &StreamName,
    records: &[KeyedRecord],
) -> Result<HashMap<String, StoredKey>, StorageError> {
    let mut keys: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut found = HashMap::new();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let sql = format!(
            "SELECT key, tag, committed_ms FROM courier_dedup_keys WHERE stream = ? AND key IN ({marks})"
        );
        let mut select = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(name.as_str());
        for key in chunk {
            select = select.bind(*key);
        }
        for row in select
            .persistent(chunk.len() == 1)
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error)?
        {
            let committed_ms: i64 = row.try_get("committed_ms").map_err(db_error)?;
            found.insert(
                row.try_get("key").map_err(db_error)?,
                StoredKey {
                    tag: row.try_get("tag").map_err(db_error)?,
                    committed_ms: u64::try_from(committed_ms).unwrap_or(0),
                },
            );
        }
    }
    Ok(found)
}
