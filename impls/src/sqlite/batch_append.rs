//! Appends of one group-commit batch, applied together: per stream, one read of its row, the
//! append rules decided in Rust for each append in queue order, then one multi-row insert and
//! one update.
//!
//! sqlx runs every statement on its worker thread and hands the result back through a
//! channel, so statements, not bytes, are what an append costs; applying a batch's appends
//! one by one took 5 to 7 statements each (savepoint, stream row, producer row, insert,
//! upsert, update, release). A refused append writes nothing (the rules run before any
//! write), so no savepoint is needed; a database error fails the whole batch.

use std::collections::HashMap;

use bytes::Bytes;
use courier_traits::storage::{
    AppendOutcome, AppendRequest, ProducerStamp, StorageError, StreamName,
};
use sqlx::{Row, SqliteConnection};

use super::db_error;
use super::row::{StreamRow, load_live, now_ms};
use crate::rules::{AppendContext, AppendPlan, ProducerState, committed_outcome, plan_append};

/// Rows per insert statement (3 bound values each, well under SQLite's variable limit).
const ROWS_PER_INSERT: usize = 200;

/// One queued append and, once decided, its result.
pub(super) struct QueuedAppend {
    pub(super) name: StreamName,
    pub(super) request: AppendRequest,
    pub(super) result: Option<Result<AppendOutcome, StorageError>>,
}

/// Decides and writes `appends` inside the open transaction. Each append's own result is
/// stored in it; `Err` is a database failure that must abort the whole batch.
pub(super) async fn apply(
    conn: &mut SqliteConnection,
    appends: &mut [&mut QueuedAppend],
) -> Result<(), StorageError> {
    let mut streams: HashMap<StreamName, Vec<usize>> = HashMap::new();
    for (i, append) in appends.iter().enumerate() {
        streams.entry(append.name.clone()).or_default().push(i);
    }
    for (name, members) in streams {
        let row = match load_live(conn, &name).await {
            Ok(row) => row,
            Err(e @ (StorageError::Unavailable { .. } | StorageError::Backend { .. })) => {
                return Err(e);
            }
            Err(refusal) => {
                for &i in &members {
                    appends[i].result = Some(Err(same_refusal(&refusal, &name)));
                }
                continue;
            }
        };
        let mut stream = StreamState::new(&name, row);
        for &i in &members {
            let request = &appends[i].request;
            let result = stream.decide(conn, request).await?;
            appends[i].result = Some(result);
        }
        stream.write(conn).await?;
    }
    Ok(())
}

/// A copy of a per-stream refusal for every append to that stream.
fn same_refusal(refusal: &StorageError, name: &StreamName) -> StorageError {
    match refusal {
        StorageError::Gone { .. } => StorageError::Gone {
            stream: name.clone(),
        },
        _ => StorageError::NotFound {
            stream: name.clone(),
        },
    }
}

/// A stream's state as the batch's appends change it, and what they write.
struct StreamState<'n> {
    name: &'n StreamName,
    row: StreamRow,
    producers: HashMap<String, Option<ProducerState>>,
    changed_producers: Vec<String>,
    records: Vec<Bytes>,
    first_index: u64,
    changed: bool,
}

impl<'n> StreamState<'n> {
    fn new(name: &'n StreamName, row: StreamRow) -> StreamState<'n> {
        StreamState {
            name,
            first_index: row.next_index,
            row,
            producers: HashMap::new(),
            changed_producers: Vec::new(),
            records: Vec::new(),
            changed: false,
        }
    }

    /// Applies the rules to one append against the state so far.
    async fn decide(
        &mut self,
        conn: &mut SqliteConnection,
        request: &AppendRequest,
    ) -> Result<Result<AppendOutcome, StorageError>, StorageError> {
        let producer = match &request.producer {
            None => None,
            Some(stamp) => self.producer(conn, stamp).await?,
        };
        let ctx = AppendContext {
            stream: self.name,
            tail: self.row.next_index,
            closed: self.row.closed,
            closed_by: self.row.closed_by.as_ref(),
            content_type: &self.row.content_type,
            producer,
            writer_seq: self.row.writer_seq.as_deref(),
        };
        let accepted = match plan_append(&ctx, request) {
            Err(refused) => return Ok(Err(refused)),
            Ok(AppendPlan::Reply(outcome)) => return Ok(Ok(outcome)),
            Ok(AppendPlan::Commit { producer }) => producer,
        };
        let outcome = committed_outcome(self.row.next_index, request, accepted);
        self.records.extend(request.records.iter().cloned());
        self.row.next_index += request.records.len() as u64;
        if let Some(seq) = &request.writer_seq {
            self.row.writer_seq = Some(seq.clone());
        }
        if request.close {
            self.row.closed = true;
            if let Some(stamp) = &request.producer {
                self.row.closed_by = Some(stamp.clone());
            }
        }
        if let (Some(stamp), Some(state)) = (&request.producer, accepted) {
            self.producers.insert(stamp.id.clone(), Some(state));
            if !self.changed_producers.contains(&stamp.id) {
                self.changed_producers.push(stamp.id.clone());
            }
        }
        self.changed = true;
        Ok(Ok(outcome))
    }

    /// The stored state of a producer, read once per batch.
    async fn producer(
        &mut self,
        conn: &mut SqliteConnection,
        stamp: &ProducerStamp,
    ) -> Result<Option<ProducerState>, StorageError> {
        if let Some(known) = self.producers.get(&stamp.id) {
            return Ok(*known);
        }
        let stored = sqlx::query(
            "SELECT epoch, last_seq FROM courier_producers WHERE stream = ? AND producer = ?",
        )
        .bind(self.name.as_str())
        .bind(&stamp.id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?
        .map(|r| -> Result<ProducerState, StorageError> {
            Ok(ProducerState {
                epoch: r.try_get::<i64, _>("epoch").map_err(db_error)? as u64,
                last_seq: r.try_get::<i64, _>("last_seq").map_err(db_error)? as u64,
            })
        })
        .transpose()?;
        self.producers.insert(stamp.id.clone(), stored);
        Ok(stored)
    }

    /// Writes the accepted records, producer states and the stream row.
    async fn write(self, conn: &mut SqliteConnection) -> Result<(), StorageError> {
        if !self.changed {
            return Ok(());
        }
        let mut index = self.first_index;
        for chunk in self.records.chunks(ROWS_PER_INSERT) {
            let mut sql = String::from("INSERT INTO courier_records (stream, idx, data) VALUES ");
            for i in 0..chunk.len() {
                sql.push_str(if i == 0 { "(?, ?, ?)" } else { ", (?, ?, ?)" });
            }
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
            for data in chunk {
                insert = insert
                    .bind(self.name.as_str())
                    .bind(index as i64)
                    .bind(&data[..]);
                index += 1;
            }
            // Statements of other sizes are rare: do not crowd the prepared-statement cache.
            insert
                .persistent(chunk.len() == 1)
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
        }
        for id in &self.changed_producers {
            let Some(Some(state)) = self.producers.get(id) else {
                continue;
            };
            sqlx::query(
                "INSERT INTO courier_producers (stream, producer, epoch, last_seq) VALUES (?, ?, ?, ?)
                 ON CONFLICT (stream, producer) DO UPDATE SET epoch = excluded.epoch, last_seq = excluded.last_seq",
            )
            .bind(self.name.as_str())
            .bind(id)
            .bind(state.epoch as i64)
            .bind(state.last_seq as i64)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        }
        let closed_by = self.row.closed_by.as_ref();
        sqlx::query(
            "UPDATE courier_streams SET next_index = ?, last_access_ms = ?, writer_seq = ?,
                 closed = ?, closed_by_id = ?, closed_by_epoch = ?, closed_by_seq = ?
             WHERE name = ?",
        )
        .bind(self.row.next_index as i64)
        .bind(now_ms())
        .bind(self.row.writer_seq.as_deref())
        .bind(self.row.closed)
        .bind(closed_by.map(|p| p.id.as_str()))
        .bind(closed_by.map(|p| p.epoch as i64))
        .bind(closed_by.map(|p| p.seq as i64))
        .bind(self.name.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
        Ok(())
    }
}
