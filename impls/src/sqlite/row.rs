//! One stream's stored row, and the statements that read it and judge it live.

use courier_traits::storage::{ProducerStamp, ReadFrom, StorageError, StreamName};
use rusqlite::{Connection, OptionalExtension, Row};

use super::errors::db_error;
use crate::sql_model::start_index;
pub(super) use crate::sql_model::{StreamRow, encode_expiry, now_ms, requested_key};

/// Loads `name`'s row, if any.
pub(super) fn load(
    conn: &Connection,
    name: &StreamName,
) -> Result<Option<StreamRow>, StorageError> {
    conn.prepare_cached(
        "SELECT content_type, expiry_kind, expiry_ms, requested, closed, closed_by_id,
             closed_by_epoch, closed_by_seq, writer_seq, next_index, last_access_ms, soft_deleted
         FROM courier_streams WHERE name = ?1",
    )
    .and_then(|mut select| select.query_row([name.as_str()], decode).optional())
    .map_err(db_error)
}

/// A stream row as selected by [`load`].
fn decode(row: &Row<'_>) -> rusqlite::Result<StreamRow> {
    let closed_by = match row.get::<_, Option<String>>(5)? {
        Some(id) => Some(ProducerStamp {
            id,
            epoch: row.get::<_, i64>(6)? as u64,
            seq: row.get::<_, i64>(7)? as u64,
        }),
        None => None,
    };
    Ok(StreamRow {
        content_type: row.get(0)?,
        expiry_kind: row.get(1)?,
        expiry_ms: row.get(2)?,
        requested: row.get(3)?,
        closed: row.get::<_, i64>(4)? != 0,
        closed_by,
        writer_seq: row.get(8)?,
        next_index: row.get::<_, i64>(9)? as u64,
        last_access_ms: row.get(10)?,
        soft_deleted: row.get::<_, i64>(11)? != 0,
    })
}

/// Whether `row` (as loaded for `name`) is live at `now`: absent or expired is `NotFound`,
/// soft-deleted is `Gone`.
pub(super) fn live(
    name: &StreamName,
    row: Option<StreamRow>,
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

/// Loads `name` if it is live at `now`: absent or expired is `NotFound`, soft-deleted is `Gone`.
/// Expired rows are left for [`expired_names`] sweeps and `reap` (a failed operation's
/// transaction rolls back, so removing them here would not stick).
pub(super) fn load_live(
    conn: &Connection,
    name: &StreamName,
    now: i64,
) -> Result<StreamRow, StorageError> {
    live(name, load(conn, name)?, now)
}

/// Up to `limit` streams expired at `now` that are not yet removed.
pub(super) fn expired_names(
    conn: &Connection,
    limit: i64,
    now: i64,
) -> Result<Vec<StreamName>, StorageError> {
    let mut select = conn
        .prepare_cached(
            "SELECT name FROM courier_streams WHERE soft_deleted = 0 AND
                ((expiry_kind = 1 AND ?1 - last_access_ms >= expiry_ms) OR (expiry_kind = 2 AND ?1 >= expiry_ms))
             LIMIT ?2",
        )
        .map_err(db_error)?;
    let names = select
        .query_map((now, limit), |row| row.get::<_, String>(0))
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
        .map_err(db_error)?;
    Ok(names
        .iter()
        .filter_map(|name| StreamName::new(name).ok())
        .collect())
}

/// The record index a read from `from` starts at, in `name` whose row is `row`.
pub(super) fn start_of(
    name: &StreamName,
    row: &StreamRow,
    from: &ReadFrom,
) -> Result<u64, StorageError> {
    match from {
        ReadFrom::Start => Ok(0),
        ReadFrom::After(offset) => start_index(name, row, Some(offset)),
        ReadFrom::Tail => Ok(row.next_index),
    }
}
