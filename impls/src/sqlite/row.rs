//! One stream's stored row, and the statements that read it and judge it live.

use std::collections::HashMap;

use courier_traits::storage::{ProducerStamp, StorageError, StreamName};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use super::errors::db_error;
pub(super) use crate::sql_model::{StreamRow, encode_expiry, now_ms, requested_key};

/// The columns [`decode`] reads.
const COLUMNS: &str = "name, content_type, expiry_kind, expiry_ms, requested, closed, closed_by_id,
    closed_by_epoch, closed_by_seq, writer_seq, next_index, last_access_ms, soft_deleted";

/// Loads `name`'s row, if any.
pub(super) async fn load(
    conn: &mut SqliteConnection,
    name: &StreamName,
) -> Result<Option<StreamRow>, StorageError> {
    let sql = format!("SELECT {COLUMNS} FROM courier_streams WHERE name = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(name.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?;
    row.as_ref().map(decode).transpose()
}

/// Loads the rows of `names` (at most a few hundred) in one statement, keyed by name.
pub(super) async fn load_many(
    conn: &mut SqliteConnection,
    names: &[&StreamName],
) -> Result<HashMap<String, StreamRow>, StorageError> {
    let mut found = HashMap::with_capacity(names.len());
    if names.is_empty() {
        return Ok(found);
    }
    let marks = vec!["?"; names.len()].join(", ");
    let sql = format!("SELECT {COLUMNS} FROM courier_streams WHERE name IN ({marks})");
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for name in names {
        query = query.bind(name.as_str());
    }
    let rows = query
        .persistent(names.len() == 1)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
    for row in &rows {
        let name: String = row.try_get("name").map_err(db_error)?;
        found.insert(name, decode(row)?);
    }
    Ok(found)
}

/// A stream row as selected with [`COLUMNS`].
fn decode(row: &SqliteRow) -> Result<StreamRow, StorageError> {
    let get_i64 = |col: &str| row.try_get::<i64, _>(col).map_err(db_error);
    let closed_by = match row
        .try_get::<Option<String>, _>("closed_by_id")
        .map_err(db_error)?
    {
        Some(id) => Some(ProducerStamp {
            id,
            epoch: get_i64("closed_by_epoch")? as u64,
            seq: get_i64("closed_by_seq")? as u64,
        }),
        None => None,
    };
    Ok(StreamRow {
        content_type: row.try_get("content_type").map_err(db_error)?,
        expiry_kind: get_i64("expiry_kind")?,
        expiry_ms: get_i64("expiry_ms")?,
        requested: row.try_get("requested").map_err(db_error)?,
        closed: get_i64("closed")? != 0,
        closed_by,
        writer_seq: row.try_get("writer_seq").map_err(db_error)?,
        next_index: get_i64("next_index")? as u64,
        last_access_ms: get_i64("last_access_ms")?,
        soft_deleted: get_i64("soft_deleted")? != 0,
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
pub(super) async fn load_live(
    conn: &mut SqliteConnection,
    name: &StreamName,
    now: i64,
) -> Result<StreamRow, StorageError> {
    live(name, load(conn, name).await?, now)
}

/// Up to `limit` streams expired at `now` that are not yet removed.
pub(super) async fn expired_names(
    conn: &mut SqliteConnection,
    limit: i64,
    now: i64,
) -> Result<Vec<StreamName>, StorageError> {
    let rows = sqlx::query(
        "SELECT name FROM courier_streams WHERE soft_deleted = 0 AND
            ((expiry_kind = 1 AND ? - last_access_ms >= expiry_ms) OR (expiry_kind = 2 AND ? >= expiry_ms))
         LIMIT ?",
    )
    .bind(now)
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
