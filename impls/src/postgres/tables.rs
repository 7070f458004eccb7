//! The statements on the stream row: load (optionally row-locked), the producer states of an
//! append batch, liveness, the expired ones.

use std::collections::HashMap;

use courier_traits::storage::{ProducerStamp, StorageError, StreamName};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::errors::db_error;
use crate::rules::ProducerState;
use crate::sql_model::StreamRow;

const COLUMNS: &str = "s.content_type, s.expiry_kind, s.expiry_ms, s.requested, s.closed, s.closed_by_id,
     s.closed_by_epoch, s.closed_by_seq, s.writer_seq, s.next_index, s.last_access_ms, s.soft_deleted";

/// Loads `name`'s row; with `lock`, holds its row lock until the transaction ends, so
/// appends to one stream are serialised and indexes follow commit order.
pub(super) async fn load(
    conn: &mut PgConnection,
    name: &StreamName,
    lock: bool,
) -> Result<Option<StreamRow>, StorageError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM courier_streams s WHERE s.name = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(name.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?;
    row.as_ref().map(decode).transpose()
}

/// Row-locks and loads those rows of `names` that no other transaction holds; the others
/// (locked elsewhere, or absent) are missing from the map. It never waits for a lock, so a
/// transaction that takes its rows this way cannot be part of a deadlock, nor held up by one
/// busy stream.
pub(super) async fn load_unlocked_many(
    conn: &mut PgConnection,
    names: &[&str],
) -> Result<HashMap<String, StreamRow>, StorageError> {
    let sql = format!(
        "SELECT s.name, {COLUMNS} FROM courier_streams s WHERE s.name = ANY($1) FOR UPDATE SKIP LOCKED"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(names)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
    rows.iter()
        .map(|row| Ok((row.try_get("name").map_err(db_error)?, decode(row)?)))
        .collect()
}

/// Decodes a `courier_streams` row selected with [`COLUMNS`].
fn decode(row: &PgRow) -> Result<StreamRow, StorageError> {
    let get = |col: &str| row.try_get::<i64, _>(col).map_err(db_error);
    let closed_by = match row
        .try_get::<Option<String>, _>("closed_by_id")
        .map_err(db_error)?
    {
        Some(id) => Some(ProducerStamp {
            id,
            epoch: get("closed_by_epoch")? as u64,
            seq: get("closed_by_seq")? as u64,
        }),
        None => None,
    };
    Ok(StreamRow {
        content_type: row.try_get("content_type").map_err(db_error)?,
        expiry_kind: get("expiry_kind")?,
        expiry_ms: get("expiry_ms")?,
        requested: row.try_get("requested").map_err(db_error)?,
        closed: get("closed")? != 0,
        closed_by,
        writer_seq: row.try_get("writer_seq").map_err(db_error)?,
        next_index: get("next_index")? as u64,
        last_access_ms: get("last_access_ms")?,
        soft_deleted: get("soft_deleted")? != 0,
    })
}

/// For a batch of appends, after its stream's row is locked: the stored state of `producers`
/// (those not stored are absent from the map).
///
/// Read by a statement of its own, after the lock is held: a statement that waited for the
/// lock sees the locked row as the holder left it, but every other table as of its own start
/// (READ COMMITTED re-checks only the locked row), so a producer state read in the same
/// statement would predate the holder's append and let a retry be written twice.
pub(super) async fn load_producers(
    conn: &mut PgConnection,
    name: &StreamName,
    producers: &[String],
) -> Result<HashMap<String, ProducerState>, StorageError> {
    if producers.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query(
        "SELECT producer, epoch, last_seq FROM courier_producers WHERE stream = $1 AND producer = ANY($2)",
    )
    .bind(name.as_str())
    .bind(producers)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    rows.iter()
        .map(|r| Ok((text(r, "producer")?, producer_state(r)?)))
        .collect()
}

/// A text column of `row`.
fn text(row: &PgRow, column: &str) -> Result<String, StorageError> {
    row.try_get(column).map_err(db_error)
}

/// The `epoch` and `last_seq` columns of a `courier_producers` row.
fn producer_state(row: &PgRow) -> Result<ProducerState, StorageError> {
    let get = |column: &str| row.try_get::<i64, _>(column).map_err(db_error);
    Ok(ProducerState {
        epoch: get("epoch")? as u64,
        last_seq: get("last_seq")? as u64,
    })
}

/// For the batches of a shared commit, after their rows are locked: the stored state of each
/// `(stream, producer)` pair named (read by a statement of its own, as [`load_producers`]).
pub(super) async fn load_producers_many(
    conn: &mut PgConnection,
    streams: &[&str],
    producers: &[&str],
) -> Result<HashMap<(String, String), ProducerState>, StorageError> {
    if producers.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query(
        "SELECT p.stream, p.producer, p.epoch, p.last_seq
         FROM unnest($1::TEXT[], $2::TEXT[]) AS wanted (stream, producer)
         JOIN courier_producers p ON p.stream = wanted.stream AND p.producer = wanted.producer",
    )
    .bind(streams)
    .bind(producers)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    rows.iter()
        .map(|r| {
            Ok((
                (text(r, "stream")?, text(r, "producer")?),
                producer_state(r)?,
            ))
        })
        .collect()
}

/// Loads `name` if it is live at `now`: absent or expired is `NotFound`, soft-deleted is `Gone`.
pub(super) async fn load_live(
    conn: &mut PgConnection,
    name: &StreamName,
    lock: bool,
    now: i64,
) -> Result<StreamRow, StorageError> {
    live(load(conn, name, lock).await?, name, now)
}

/// `row` if it is live at `now`: absent or expired is `NotFound`, soft-deleted is `Gone`.
pub(super) fn live(
    row: Option<StreamRow>,
    name: &StreamName,
    now: i64,
) -> Result<StreamRow, StorageError> {
    match row {
        Some(row) if row.soft_deleted => Err(StorageError::Gone {
            stream: name.clone(),
        }),
        Some(row) if !row.is_expired(now) => Ok(row),
        _ => Err(StorageError::NotFound {
            stream: name.clone(),
        }),
    }
}

/// Up to `limit` streams expired at `now` and not yet removed.
pub(super) async fn expired_names(
    conn: &mut PgConnection,
    limit: i64,
    now: i64,
) -> Result<Vec<StreamName>, StorageError> {
    let rows = sqlx::query(
        "SELECT name FROM courier_streams WHERE soft_deleted = 0 AND
            ((expiry_kind = 1 AND $1 - last_access_ms >= expiry_ms) OR (expiry_kind = 2 AND $1 >= expiry_ms))
         LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(rows
        .iter()
        .filter_map(|r| StreamName::new(&r.try_get::<String, _>("name").ok()?).ok())
        .collect())
}
