//! Fork chains in the SQL storages (SQLite, Postgres): copying what a fork inherits and
//! deleting up a chain, in the order the shared rules decide ([`plan_fork`], [`RemoveChain`]).
//! The statements are the same text on both databases ([`fork_statements!`]); each database
//! only supplies how it inserts records ([`InsertRecords`]).

use bytes::Bytes;
use courier_traits::storage::{ForkFrom, StorageError, StreamName};

use crate::rules::{ByteCut, ChainLink, Removal, RemoveChain, plan_fork};

/// How a database inserts records (Postgres: one statement of arrays; SQLite: a statement a
/// record, cheap on a local file). Used by create for its initial records too.
pub(crate) trait InsertRecords {
    /// Inserts `records` into `stream` at indexes `first..`.
    async fn insert_records(
        &mut self,
        stream: &StreamName,
        first: u64,
        records: &[Bytes],
    ) -> Result<(), StorageError>;
}

/// The statements run on fork chains, inside the caller's transaction. Both databases read
/// `$N` parameters, so [`fork_statements!`] writes them once for both.
pub(crate) trait ForkStatements: InsertRecords {
    /// Copies `source`'s records at indexes below `below` into `fork`, at the same indexes.
    async fn copy_records(
        &mut self,
        source: &StreamName,
        fork: &StreamName,
        below: u64,
    ) -> Result<(), StorageError>;
    /// Feeds `source`'s records from index `from` on to `cut`, in order, while it wants more.
    async fn feed_records(
        &mut self,
        source: &StreamName,
        from: u64,
        cut: &mut ByteCut,
    ) -> Result<(), StorageError>;
    /// `name`'s place in its chain (row-locked where the database locks rows), if it exists.
    async fn link(&mut self, name: &StreamName) -> Result<Option<ChainLink>, StorageError>;
    /// Marks `name` deleted, keeping its records for its forks.
    async fn mark_deleted(&mut self, name: &StreamName) -> Result<(), StorageError>;
    /// Removes `name` with its records and producer state.
    async fn delete_stream(&mut self, name: &StreamName) -> Result<(), StorageError>;
    /// Takes one off `parent`'s live forks; its soft-deleted flag and live forks after that,
    /// if it exists.
    async fn release(&mut self, parent: &StreamName) -> Result<Option<(bool, i64)>, StorageError>;
}

/// Implements [`ForkStatements`] for a sqlx connection type `$conn` whose errors map with
/// `$db_error`; `$lock` ends the select of a chain link (Postgres: `" FOR UPDATE"`; SQLite
/// needs none, its single writer holds the database lock); `$delete_keys` deletes a stream's
/// dedup keys (each database names the index it must use its own way).
#[cfg(feature = "postgres")]
macro_rules! fork_statements {
    ($conn:ty, $lock:literal, $delete_keys:literal, $db_error:path) => {
        impl $crate::sql_forks::ForkStatements for $conn {
            async fn copy_records(
                &mut self,
                source: &courier_traits::storage::StreamName,
                fork: &courier_traits::storage::StreamName,
                below: u64,
            ) -> Result<(), courier_traits::storage::StorageError> {
                sqlx::query(
                    "INSERT INTO courier_records (stream, idx, data)
                     SELECT $1, idx, data FROM courier_records WHERE stream = $2 AND idx < $3",
                )
                .bind(fork.as_str())
                .bind(source.as_str())
                .bind(below as i64)
                .execute(&mut *self)
                .await
                .map_err($db_error)?;
                Ok(())
            }

            async fn feed_records(
                &mut self,
                source: &courier_traits::storage::StreamName,
                from: u64,
                cut: &mut $crate::rules::ByteCut,
            ) -> Result<(), courier_traits::storage::StorageError> {
                use futures::TryStreamExt as _;
                let mut rows = sqlx::query(
                    "SELECT data FROM courier_records WHERE stream = $1 AND idx >= $2 ORDER BY idx",
                )
                .bind(source.as_str())
                .bind(from as i64)
                .fetch(&mut *self);
                while cut.wants_more() {
                    let Some(row) = rows.try_next().await.map_err($db_error)? else {
                        break;
                    };
                    let data: Vec<u8> = sqlx::Row::try_get(&row, "data").map_err($db_error)?;
                    cut.push(bytes::Bytes::from(data));
                }
                Ok(())
            }

            async fn link(
                &mut self,
                name: &courier_traits::storage::StreamName,
            ) -> Result<Option<$crate::rules::ChainLink>, courier_traits::storage::StorageError>
            {
                let Some(row) = sqlx::query(concat!(
                    "SELECT live_forks, parent FROM courier_streams WHERE name = $1",
                    $lock
                ))
                .bind(name.as_str())
                .fetch_optional(&mut *self)
                .await
                .map_err($db_error)?
                else {
                    return Ok(None);
                };
                let parent: Option<String> =
                    sqlx::Row::try_get(&row, "parent").map_err($db_error)?;
                Ok(Some($crate::rules::ChainLink {
                    live_forks: sqlx::Row::try_get(&row, "live_forks").map_err($db_error)?,
                    parent: parent
                        .and_then(|p| courier_traits::storage::StreamName::new(&p).ok()),
                }))
            }

            async fn mark_deleted(
                &mut self,
                name: &courier_traits::storage::StreamName,
            ) -> Result<(), courier_traits::storage::StorageError> {
                sqlx::query("UPDATE courier_streams SET soft_deleted = 1 WHERE name = $1")
                    .bind(name.as_str())
                    .execute(&mut *self)
                    .await
                    .map_err($db_error)?;
                Ok(())
            }

            async fn delete_stream(
                &mut self,
                name: &courier_traits::storage::StreamName,
            ) -> Result<(), courier_traits::storage::StorageError> {
                for statement in [
                    "DELETE FROM courier_records WHERE stream = $1",
                    "DELETE FROM courier_producers WHERE stream = $1",
                    $delete_keys,
                    "DELETE FROM courier_streams WHERE name = $1",
                ] {
                    sqlx::query(statement)
                        .bind(name.as_str())
                        .execute(&mut *self)
                        .await
                        .map_err($db_error)?;
                }
                Ok(())
            }

            async fn release(
                &mut self,
                parent: &courier_traits::storage::StreamName,
            ) -> Result<Option<(bool, i64)>, courier_traits::storage::StorageError> {
                let Some(row) = sqlx::query(
                    "UPDATE courier_streams SET live_forks = live_forks - 1 WHERE name = $1
                     RETURNING soft_deleted, live_forks",
                )
                .bind(parent.as_str())
                .fetch_optional(&mut *self)
                .await
                .map_err($db_error)?
                else {
                    return Ok(None);
                };
                let soft_deleted: i64 =
                    sqlx::Row::try_get(&row, "soft_deleted").map_err($db_error)?;
                let live_forks: i64 = sqlx::Row::try_get(&row, "live_forks").map_err($db_error)?;
                Ok(Some((soft_deleted != 0, live_forks)))
            }
        }
    };
}
#[cfg(feature = "postgres")]
pub(crate) use fork_statements;

/// Copies the part of `source` (tail at `source_tail`) a fork inherits into `fork`, as `spec`
/// asks; returns how many records that is.
pub(crate) async fn copy_fork_prefix(
    db: &mut impl ForkStatements,
    source: &StreamName,
    source_tail: u64,
    fork: &StreamName,
    spec: &ForkFrom,
) -> Result<u64, StorageError> {
    let plan = plan_fork(source, source_tail, spec)?;
    db.copy_records(source, fork, plan.whole).await?;
    let Some(wanted) = plan.bytes else {
        return Ok(plan.whole);
    };
    let mut cut = ByteCut::new(wanted);
    db.feed_records(source, plan.whole, &mut cut).await?;
    let tail = cut.finish()?;
    db.insert_records(fork, plan.whole, &tail).await?;
    Ok(plan.whole + tail.len() as u64)
}

/// Deletes `name`: soft while forks live, else for real, releasing its fork source up the
/// chain. Returns the streams whose waiters must be woken.
pub(crate) async fn remove_chain(
    db: &mut impl ForkStatements,
    name: &StreamName,
) -> Result<Vec<StreamName>, StorageError> {
    let mut chain = RemoveChain::new(name);
    let mut touched = Vec::new();
    while let Some(current) = chain.next() {
        let link = db.link(&current).await?;
        let decision = chain.decide(link);
        if decision.is_some() {
            touched.push(current.clone());
        }
        match decision {
            None => break,
            Some(Removal::Soft) => db.mark_deleted(&current).await?,
            Some(Removal::Hard { parent }) => {
                db.delete_stream(&current).await?;
                if let Some(parent) = parent
                    && let Some((soft_deleted, live_forks)) = db.release(&parent).await?
                {
                    chain.released(&parent, soft_deleted, live_forks);
                }
            }
        }
    }
    Ok(touched)
}
