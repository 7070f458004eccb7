//! The statements on the stream tables: load (optionally row-locked), remove with the fork
//! cascade, records in and out.

use bytes::Bytes;
use courier_traits::InvalidInput;
use courier_traits::storage::{ForkFrom, ProducerStamp, StorageError, StreamName, SubOffset};
use futures::TryStreamExt;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::db_error;
use crate::rules::{ProducerState, index_offset};
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

/// For an append: the stream's row, locked until the transaction ends, and the stored state
/// of `producer` (if the append is stamped).
///
/// The producer state is read by a second statement, after the lock is held: a statement that
/// waited for the lock sees the locked row as the holder left it, but every other table as of
/// its own start (READ COMMITTED re-checks only the locked row), so a producer state read in
/// the same statement would predate the holder's append and let a retry be written twice.
pub(super) async fn load_for_append(
    conn: &mut PgConnection,
    name: &StreamName,
    producer: Option<&str>,
) -> Result<Option<(StreamRow, Option<ProducerState>)>, StorageError> {
    let Some(row) = load(conn, name, true).await? else {
        return Ok(None);
    };
    let Some(producer) = producer else {
        return Ok(Some((row, None)));
    };
    let state = sqlx::query(
        "SELECT epoch, last_seq FROM courier_producers WHERE stream = $1 AND producer = $2",
    )
    .bind(name.as_str())
    .bind(producer)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_error)?
    .map(|state| -> Result<ProducerState, StorageError> {
        Ok(ProducerState {
            epoch: state.try_get::<i64, _>("epoch").map_err(db_error)? as u64,
            last_seq: state.try_get::<i64, _>("last_seq").map_err(db_error)? as u64,
        })
    })
    .transpose()?;
    Ok(Some((row, state)))
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

/// Deletes `name`: soft while forks live, else for real, releasing its fork source up the
/// chain. Returns the streams whose waiters must be woken.
pub(super) async fn remove(
    conn: &mut PgConnection,
    name: &StreamName,
) -> Result<Vec<StreamName>, StorageError> {
    let mut touched = Vec::new();
    let mut next = Some(name.clone());
    while let Some(name) = next.take() {
        let row = sqlx::query(
            "SELECT live_forks, parent FROM courier_streams WHERE name = $1 FOR UPDATE",
        )
        .bind(name.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?;
        let Some(row) = row else { break };
        touched.push(name.clone());
        let live_forks: i64 = row.try_get("live_forks").map_err(db_error)?;
        let parent: Option<String> = row.try_get("parent").map_err(db_error)?;
        if live_forks > 0 {
            sqlx::query("UPDATE courier_streams SET soft_deleted = 1 WHERE name = $1")
                .bind(name.as_str())
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
            break;
        }
        for statement in [
            "DELETE FROM courier_records WHERE stream = $1",
            "DELETE FROM courier_producers WHERE stream = $1",
            "DELETE FROM courier_streams WHERE name = $1",
        ] {
            sqlx::query(statement)
                .bind(name.as_str())
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
        }
        if let Some(parent) = parent {
            let released = sqlx::query(
                "UPDATE courier_streams SET live_forks = live_forks - 1 WHERE name = $1 RETURNING soft_deleted, live_forks",
            )
            .bind(&parent)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_error)?;
            if let Some(released) = released {
                let soft_deleted: i64 = released.try_get("soft_deleted").map_err(db_error)?;
                let live_forks: i64 = released.try_get("live_forks").map_err(db_error)?;
                if soft_deleted != 0 && live_forks <= 0 {
                    next = StreamName::new(&parent).ok();
                }
            }
        }
    }
    Ok(touched)
}

pub(super) async fn insert_records(
    conn: &mut PgConnection,
    name: &StreamName,
    first: u64,
    records: &[Bytes],
) -> Result<(), StorageError> {
    if records.is_empty() {
        return Ok(());
    }
    // One statement for the whole append: arrays of indexes and payloads, unnested.
    let indexes: Vec<i64> = (0..records.len() as u64)
        .map(|i| (first + i) as i64)
        .collect();
    let payloads: Vec<&[u8]> = records.iter().map(|r| &r[..]).collect();
    sqlx::query("INSERT INTO courier_records (stream, idx, data) SELECT $1, * FROM unnest($2::BIGINT[], $3::BYTEA[])")
        .bind(name.as_str())
        .bind(&indexes)
        .bind(&payloads)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Copies the part of `source` a fork inherits into `fork`; returns how many records.
pub(super) async fn copy_fork_prefix(
    conn: &mut PgConnection,
    source: &StreamName,
    source_row: &StreamRow,
    fork: &StreamName,
    spec: &ForkFrom,
) -> Result<u64, StorageError> {
    let anchor = match &spec.offset {
        Some(offset) => {
            let index = index_offset::decode(source, offset)?;
            if index > source_row.next_index {
                return Err(StorageError::UnknownOffset {
                    stream: source.clone(),
                    offset: offset.clone(),
                });
            }
            index
        }
        None => source_row.next_index,
    };
    let overshoot = |n: u64, what: String| -> StorageError {
        InvalidInput::new(
            "fork sub-offset",
            &n.to_string(),
            format!("only {what} follow the fork offset"),
        )
        .into()
    };
    let whole = match spec.sub_offset {
        SubOffset::Records(n) if anchor.saturating_add(n) > source_row.next_index => {
            return Err(overshoot(
                n,
                format!("{} records", source_row.next_index - anchor),
            ));
        }
        SubOffset::Records(n) => anchor + n,
        SubOffset::None | SubOffset::Bytes(_) => anchor,
    };
    sqlx::query("INSERT INTO courier_records (stream, idx, data) SELECT $1, idx, data FROM courier_records WHERE stream = $2 AND idx < $3")
        .bind(fork.as_str())
        .bind(source.as_str())
        .bind(whole as i64)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    let SubOffset::Bytes(wanted) = spec.sub_offset else {
        return Ok(whole);
    };
    let mut left = wanted;
    let mut tail = Vec::new();
    {
        let mut rows = sqlx::query(
            "SELECT data FROM courier_records WHERE stream = $1 AND idx >= $2 ORDER BY idx",
        )
        .bind(source.as_str())
        .bind(anchor as i64)
        .fetch(&mut *conn);
        while left > 0 {
            let Some(row) = rows.try_next().await.map_err(db_error)? else {
                break;
            };
            let data: Vec<u8> = row.try_get("data").map_err(db_error)?;
            let take = (left as usize).min(data.len());
            tail.push(Bytes::copy_from_slice(&data[..take]));
            left -= take as u64;
        }
    }
    if left > 0 {
        return Err(overshoot(wanted, format!("{} bytes", wanted - left)));
    }
    insert_records(conn, fork, anchor, &tail).await?;
    Ok(anchor + tail.len() as u64)
}
