//! The SQLite side of fork chains (see `crate::sql_forks`): the shared rules drive these
//! statements on the writer's connection. No row lock: the single writer connection holds the
//! database's.
//!
//! The shared traits are async (Postgres awaits the network); here every statement runs
//! synchronously on the writer thread, so their futures are ready when first polled
//! ([`run_now`]).

use std::future::Future;

use bytes::Bytes;
use courier_traits::storage::{StorageError, StreamName};
use futures::FutureExt;
use rusqlite::{Connection, OptionalExtension};

use super::batch_append::insert_records;
use super::errors::db_error;
use crate::rules::{ByteCut, ChainLink};
use crate::sql_forks::{ForkStatements, InsertRecords};

/// The writer's connection, as the shared fork rules see it.
pub(super) struct ForkDb<'c>(pub(super) &'c Connection);

/// The value of `future`, which never waits (its statements run synchronously).
pub(super) fn run_now<T>(
    future: impl Future<Output = Result<T, StorageError>>,
) -> Result<T, StorageError> {
    future.now_or_never().unwrap_or_else(|| {
        Err(StorageError::Backend {
            message: "sqlite: a fork statement did not complete synchronously".into(),
            source: None,
        })
    })
}

impl InsertRecords for ForkDb<'_> {
    async fn insert_records(
        &mut self,
        stream: &StreamName,
        first: u64,
        records: &[Bytes],
    ) -> Result<(), StorageError> {
        insert_records(self.0, stream, first, records.iter().map(|r| &r[..]))
    }
}

impl ForkDb<'_> {
    fn execute(&self, sql: &str, params: impl rusqlite::Params) -> Result<(), StorageError> {
        self.0
            .prepare_cached(sql)
            .and_then(|mut statement| statement.execute(params))
            .map_err(db_error)?;
        Ok(())
    }
}

impl ForkStatements for ForkDb<'_> {
    async fn copy_records(
        &mut self,
        source: &StreamName,
        fork: &StreamName,
        below: u64,
    ) -> Result<(), StorageError> {
        self.execute(
            "INSERT INTO courier_records (stream, idx, data)
             SELECT ?1, idx, data FROM courier_records WHERE stream = ?2 AND idx < ?3",
            (fork.as_str(), source.as_str(), below as i64),
        )
    }

    async fn feed_records(
        &mut self,
        source: &StreamName,
        from: u64,
        cut: &mut ByteCut,
    ) -> Result<(), StorageError> {
        let mut select = self
            .0
            .prepare_cached(
                "SELECT data FROM courier_records WHERE stream = ?1 AND idx >= ?2 ORDER BY idx",
            )
            .map_err(db_error)?;
        let mut rows = select
            .query((source.as_str(), from as i64))
            .map_err(db_error)?;
        while cut.wants_more() {
            let Some(row) = rows.next().map_err(db_error)? else {
                break;
            };
            let data: Vec<u8> = row.get(0).map_err(db_error)?;
            cut.push(Bytes::from(data));
        }
        Ok(())
    }

    async fn link(&mut self, name: &StreamName) -> Result<Option<ChainLink>, StorageError> {
        let found = self
            .0
            .prepare_cached("SELECT live_forks, parent FROM courier_streams WHERE name = ?1")
            .and_then(|mut select| {
                select
                    .query_row([name.as_str()], |row| {
                        Ok((row.get::<_, i64>(0)?, row.get::<_, Option<String>>(1)?))
                    })
                    .optional()
            })
            .map_err(db_error)?;
        Ok(found.map(|(live_forks, parent)| ChainLink {
            live_forks,
            parent: parent.and_then(|p| StreamName::new(&p).ok()),
        }))
    }

    async fn mark_deleted(&mut self, name: &StreamName) -> Result<(), StorageError> {
        self.execute(
            "UPDATE courier_streams SET soft_deleted = 1 WHERE name = ?1",
            [name.as_str()],
        )
    }

    async fn delete_stream(&mut self, name: &StreamName) -> Result<(), StorageError> {
        for statement in [
            "DELETE FROM courier_records WHERE stream = ?1",
            "DELETE FROM courier_producers WHERE stream = ?1",
            "DELETE FROM courier_dedup_keys WHERE stream = ?1",
            "DELETE FROM courier_streams WHERE name = ?1",
        ] {
            self.execute(statement, [name.as_str()])?;
        }
        Ok(())
    }

    async fn release(&mut self, parent: &StreamName) -> Result<Option<(bool, i64)>, StorageError> {
        let found = self
            .0
            .prepare_cached(
                "UPDATE courier_streams SET live_forks = live_forks - 1 WHERE name = ?1
                 RETURNING soft_deleted, live_forks",
            )
            .and_then(|mut update| {
                update
                    .query_row([parent.as_str()], |row| {
                        Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
                    })
                    .optional()
            })
            .map_err(db_error)?;
        Ok(found.map(|(soft_deleted, live_forks)| (soft_deleted != 0, live_forks)))
    }
}
