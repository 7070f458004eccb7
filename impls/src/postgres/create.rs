//! `create` in one transaction: the existing stream's answer, an expired one's removal, the
//! fork's inherited prefix, the new row and its initial records.

use bytes::Bytes;
use courier_traits::storage::{CreateOutcome, StorageError, StreamConfig, StreamInfo, StreamName};
use sqlx::PgConnection;

use super::errors::db_error;
use super::tables::{live, load, load_live};
use crate::rules::{fork_settings, index_offset, own_settings, reject_self_fork};
use crate::sql_forks::{InsertRecords, copy_fork_prefix, remove_chain};
use crate::sql_model::{encode_expiry, existing_stream_outcome, requested_key};

/// Creates `name` inside `conn`'s transaction. `Ok(None)`: another node created it first
/// (retry, and the row will be there).
pub(super) async fn create_in(
    conn: &mut PgConnection,
    name: &StreamName,
    config: &StreamConfig,
    initial: &[Bytes],
    now: i64,
) -> Result<Option<CreateOutcome>, StorageError> {
    let row = load(conn, name, true).await?;
    let expired = row
        .as_ref()
        .is_some_and(|row| !row.soft_deleted && row.is_expired(now));
    if let Some(outcome) = existing_stream_outcome(live(row, name, now), name, config) {
        return outcome.map(Some);
    }
    // Only a row this transaction saw expired (and holds the lock of) is removed here. A row
    // another create committed after the load above is not ours to replace: the insert below
    // runs into it and the caller retries, finding that stream.
    if expired {
        remove_chain(conn, name).await?;
    }
    let (content_type, expiry, parent, source) = match &config.fork {
        None => {
            let (content_type, expiry) = own_settings(config);
            (content_type, expiry, None, None)
        }
        Some(fork) => {
            reject_self_fork(name, fork)?;
            let source = load_live(conn, &fork.source, true, now)
                .await
                .map_err(|e| e.for_fork_source(&fork.source))?;
            let (content_type, expiry) = fork_settings(name, config, source.as_fork_source())?;
            (
                content_type,
                expiry,
                Some(fork.source.to_string()),
                Some((fork, source)),
            )
        }
    };
    let (expiry_kind, expiry_ms) = encode_expiry(expiry);
    let inserted = sqlx::query(
        "INSERT INTO courier_streams (name, content_type, expiry_kind, expiry_ms, requested, closed, next_index,
             last_access_ms, parent)
         VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8)
         ON CONFLICT (name) DO NOTHING RETURNING name",
    )
    .bind(name.as_str())
    .bind(&content_type)
    .bind(expiry_kind)
    .bind(expiry_ms)
    .bind(requested_key(config))
    .bind(i64::from(config.closed))
    .bind(now)
    .bind(&parent)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_error)?;
    if inserted.is_none() {
        return Ok(None);
    }
    let inherited = match &source {
        Some((fork, source_row)) => {
            let inherited =
                copy_fork_prefix(conn, &fork.source, source_row.next_index, name, fork).await?;
            sqlx::query("UPDATE courier_streams SET live_forks = live_forks + 1 WHERE name = $1")
                .bind(fork.source.as_str())
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
            inherited
        }
        None => 0,
    };
    conn.insert_records(name, inherited, initial).await?;
    let next_index = inherited + initial.len() as u64;
    sqlx::query("UPDATE courier_streams SET next_index = $1 WHERE name = $2")
        .bind(next_index as i64)
        .bind(name.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(Some(CreateOutcome::Created(StreamInfo {
        name: name.clone(),
        content_type,
        expiry,
        next_offset: index_offset::encode(next_index),
        closed: config.closed,
    })))
}
