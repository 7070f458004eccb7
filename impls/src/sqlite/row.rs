//! One stream's stored row, and the statements that read, compare and remove it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use courier_traits::storage::{
    Expiry, ForkFrom, ProducerStamp, StorageError, StreamConfig, StreamInfo, StreamName, SubOffset,
};
use sqlx::{Row, SqliteConnection};

use super::db_error;
use crate::rules::index_offset;

/// Milliseconds since the Unix epoch.
pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Expiry as stored: (kind, milliseconds): 0 never, 1 TTL window, 2 absolute Unix time.
pub(super) fn encode_expiry(expiry: Expiry) -> (i64, i64) {
    match expiry {
        Expiry::Never => (0, 0),
        Expiry::Ttl(ttl) => (1, ttl.as_millis().min(i64::MAX as u128) as i64),
        Expiry::At(at) => (
            2,
            at.duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or_default(),
        ),
    }
}

fn decode_expiry(kind: i64, ms: i64) -> Expiry {
    let ms = Duration::from_millis(ms.max(0) as u64);
    match kind {
        1 => Expiry::Ttl(ms),
        2 => Expiry::At(UNIX_EPOCH + ms),
        _ => Expiry::Never,
    }
}

/// The parts of a create request that must match for an idempotent re-create (besides the
/// content type and closed flag, compared against the stream's current values), as text.
/// Times compare at millisecond precision, the precision they are stored at.
pub(super) fn requested_key(config: &StreamConfig) -> String {
    let (kind, ms) = encode_expiry(config.expiry);
    let fork = match &config.fork {
        None => String::from("-"),
        Some(ForkFrom {
            source,
            offset,
            sub_offset,
        }) => {
            let sub = match sub_offset {
                SubOffset::None => String::from("none"),
                SubOffset::Records(n) => format!("records:{n}"),
                SubOffset::Bytes(n) => format!("bytes:{n}"),
            };
            let offset = offset.as_ref().map(|o| o.as_str()).unwrap_or("-");
            format!("{source}\n{offset}\n{sub}")
        }
    };
    format!("{kind}:{ms}\n{fork}")
}

/// A row of `courier_streams`.
pub(super) struct StreamRow {
    pub(super) content_type: String,
    pub(super) expiry_kind: i64,
    pub(super) expiry_ms: i64,
    pub(super) requested: String,
    pub(super) closed: bool,
    pub(super) closed_by: Option<ProducerStamp>,
    pub(super) writer_seq: Option<String>,
    pub(super) next_index: u64,
    pub(super) last_access_ms: i64,
    pub(super) soft_deleted: bool,
}

impl StreamRow {
    pub(super) fn expiry(&self) -> Expiry {
        decode_expiry(self.expiry_kind, self.expiry_ms)
    }

    pub(super) fn is_expired(&self, now_ms: i64) -> bool {
        match self.expiry_kind {
            1 => now_ms - self.last_access_ms >= self.expiry_ms,
            2 => now_ms >= self.expiry_ms,
            _ => false,
        }
    }

    /// Whether a read should refresh `last_access_ms`: only for TTL streams, and at most about
    /// ten times per window, so reads stay reads.
    pub(super) fn needs_touch(&self, now_ms: i64) -> bool {
        self.expiry_kind == 1
            && now_ms - self.last_access_ms >= (self.expiry_ms / 10).clamp(1, 1000)
    }

    pub(super) fn info(&self, name: &StreamName) -> StreamInfo {
        StreamInfo {
            name: name.clone(),
            content_type: self.content_type.clone(),
            expiry: self.expiry(),
            next_offset: index_offset::encode(self.next_index),
            closed: self.closed,
        }
    }

    /// Why this stream's configuration differs from `wanted`, if it does.
    pub(super) fn difference(&self, wanted: &StreamConfig) -> Option<&'static str> {
        let wanted_key = requested_key(wanted);
        let (wanted_expiry, wanted_fork) = wanted_key.split_once('\n').unwrap_or((&wanted_key, ""));
        let (stored_expiry, stored_fork) = self
            .requested
            .split_once('\n')
            .unwrap_or((&self.requested, ""));
        if wanted
            .content_type
            .as_ref()
            .is_some_and(|ct| *ct != self.content_type)
        {
            Some("content type differs")
        } else if wanted_expiry != stored_expiry {
            Some("TTL or expiry differs")
        } else if wanted.closed != self.closed {
            Some("closed flag differs")
        } else if wanted_fork != stored_fork {
            Some("fork origin differs")
        } else {
            None
        }
    }
}

/// Loads `name`'s row, if any.
pub(super) async fn load(
    conn: &mut SqliteConnection,
    name: &StreamName,
) -> Result<Option<StreamRow>, StorageError> {
    let row = sqlx::query(
        "SELECT content_type, expiry_kind, expiry_ms, requested, closed, closed_by_id, closed_by_epoch,
                closed_by_seq, writer_seq, next_index, last_access_ms, soft_deleted
         FROM courier_streams WHERE name = ?",
    )
    .bind(name.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_error)?;
    let Some(row) = row else { return Ok(None) };
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
    Ok(Some(StreamRow {
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
    }))
}

/// Loads `name` if it is live: absent or expired is `NotFound`, soft-deleted is `Gone`.
/// Expired rows are left for [`expired_names`] sweeps and `reap` (a failed operation's
/// transaction rolls back, so removing them here would not stick).
pub(super) async fn load_live(
    conn: &mut SqliteConnection,
    name: &StreamName,
) -> Result<StreamRow, StorageError> {
    match load(conn, name).await? {
        Some(row) if row.soft_deleted => Err(StorageError::Gone {
            stream: name.clone(),
        }),
        Some(row) if !row.is_expired(now_ms()) => Ok(row),
        _ => Err(StorageError::NotFound {
            stream: name.clone(),
        }),
    }
}

/// Up to `limit` expired streams that are not yet removed.
pub(super) async fn expired_names(
    conn: &mut SqliteConnection,
    limit: i64,
) -> Result<Vec<StreamName>, StorageError> {
    let now = now_ms();
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

/// Deletes `name`: soft while forks live, else for real, releasing its fork source (and the
/// source's source, up the chain, when they were only kept for this fork). Returns the streams
/// whose waiters must be woken.
pub(super) async fn remove(
    conn: &mut SqliteConnection,
    name: &StreamName,
) -> Result<Vec<StreamName>, StorageError> {
    let mut touched = Vec::new();
    let mut next = Some(name.clone());
    while let Some(name) = next.take() {
        let row = sqlx::query("SELECT live_forks, parent FROM courier_streams WHERE name = ?")
            .bind(name.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_error)?;
        let Some(row) = row else { break };
        touched.push(name.clone());
        let live_forks: i64 = row.try_get("live_forks").map_err(db_error)?;
        let parent: Option<String> = row.try_get("parent").map_err(db_error)?;
        if live_forks > 0 {
            sqlx::query("UPDATE courier_streams SET soft_deleted = 1 WHERE name = ?")
                .bind(name.as_str())
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
            break;
        }
        for statement in [
            "DELETE FROM courier_records WHERE stream = ?",
            "DELETE FROM courier_producers WHERE stream = ?",
            "DELETE FROM courier_streams WHERE name = ?",
        ] {
            sqlx::query(statement)
                .bind(name.as_str())
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
        }
        if let Some(parent) = parent {
            let released = sqlx::query(
                "UPDATE courier_streams SET live_forks = live_forks - 1 WHERE name = ?
                 RETURNING soft_deleted, live_forks",
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
