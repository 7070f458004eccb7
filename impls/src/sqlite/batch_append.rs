//! Appends of one group-commit batch, applied together: one read of all the streams' rows,
//! the append rules decided in Rust for each append in queue order, then one multi-row insert
//! of the records and one update of the stream rows (each split into chunks of bounded size).
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

use super::errors::db_error;
use super::row::{StreamRow, live, load_many};
use crate::rules::{AppendContext, AppendPlan, ProducerState, committed_outcome, plan_append};

/// Rows per insert statement (3 or 4 bound values each, well under SQLite's variable limit).
const ROWS_PER_INSERT: usize = 200;
/// Streams per select or update statement (8 bound values each in the update).
const STREAMS_PER_STATEMENT: usize = 100;

/// One queued append and, once decided, its result.
pub(super) struct QueuedAppend {
    pub(super) name: StreamName,
    pub(super) request: AppendRequest,
    pub(super) result: Option<Result<AppendOutcome, StorageError>>,
}

/// Decides and writes `appends` inside the open transaction, with expiry judged at `now`.
/// Each append's own result is stored in it; `Err` is a database failure that must abort the
/// whole batch.
pub(super) async fn apply(
    conn: &mut SqliteConnection,
    appends: &mut [&mut QueuedAppend],
    now: i64,
) -> Result<(), StorageError> {
    let mut names: Vec<StreamName> = Vec::new();
    let mut members: HashMap<StreamName, Vec<usize>> = HashMap::new();
    for (i, append) in appends.iter().enumerate() {
        let entry = members.entry(append.name.clone()).or_default();
        if entry.is_empty() {
            names.push(append.name.clone());
        }
        entry.push(i);
    }
    let mut streams = Vec::with_capacity(names.len());
    for chunk in names.chunks(STREAMS_PER_STATEMENT) {
        let refs: Vec<&StreamName> = chunk.iter().collect();
        let mut rows = load_many(conn, &refs).await?;
        for name in chunk {
            match live(name, rows.remove(name.as_str()), now) {
                Ok(row) => streams.push(StreamState::new(name, row)),
                Err(refusal) => {
                    for &i in &members[name] {
                        appends[i].result = Some(Err(same_refusal(&refusal, name)));
                    }
                }
            }
        }
    }
    for stream in &mut streams {
        for &i in &members[stream.name] {
            let result = stream.decide(conn, &appends[i].request).await?;
            appends[i].result = Some(result);
        }
    }
    write(conn, &streams, now).await
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

/// `INSERT ... VALUES (?, ?, ?), (?, ?, ?), ...` with `rows` tuples of `width` values.
pub(super) fn values_sql(head: &str, rows: usize, width: usize, tail: &str) -> String {
    let tuple = format!("({})", vec!["?"; width].join(", "));
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * (tuple.len() + 2));
    sql.push_str(head);
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&tuple);
    }
    sql.push_str(tail);
    sql
}

/// Writes what the batch's accepted appends changed: records, producer states, stream rows.
async fn write(
    conn: &mut SqliteConnection,
    streams: &[StreamState<'_>],
    now: i64,
) -> Result<(), StorageError> {
    let changed: Vec<&StreamState<'_>> = streams.iter().filter(|s| s.changed).collect();
    let records: Vec<(&str, u64, &Bytes)> = changed
        .iter()
        .flat_map(|s| {
            s.records
                .iter()
                .enumerate()
                .map(|(i, data)| (s.name.as_str(), s.first_index + i as u64, data))
        })
        .collect();
    for chunk in records.chunks(ROWS_PER_INSERT) {
        let sql = values_sql(
            "INSERT INTO courier_records (stream, idx, data) VALUES ",
            chunk.len(),
            3,
            "",
        );
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (stream, index, data) in chunk {
            insert = insert.bind(*stream).bind(*index as i64).bind(&data[..]);
        }
        // Statements of other sizes are rare: do not crowd the prepared-statement cache.
        insert
            .persistent(chunk.len() == 1)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
    }
    let producers: Vec<(&str, &str, ProducerState)> = changed
        .iter()
        .flat_map(|s| {
            s.changed_producers.iter().filter_map(|id| {
                let state = (*s.producers.get(id)?)?;
                Some((s.name.as_str(), id.as_str(), state))
            })
        })
        .collect();
    for chunk in producers.chunks(ROWS_PER_INSERT) {
        let sql = values_sql(
            "INSERT INTO courier_producers (stream, producer, epoch, last_seq) VALUES ",
            chunk.len(),
            4,
            " ON CONFLICT (stream, producer) DO UPDATE SET epoch = excluded.epoch, last_seq = excluded.last_seq",
        );
        let mut upsert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (stream, id, state) in chunk {
            upsert = upsert
                .bind(*stream)
                .bind(*id)
                .bind(state.epoch as i64)
                .bind(state.last_seq as i64);
        }
        upsert
            .persistent(chunk.len() == 1)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
    }
    for chunk in changed.chunks(STREAMS_PER_STATEMENT) {
        // SQLite names the columns of a VALUES list column1, column2, ...
        let sql = values_sql(
            "UPDATE courier_streams SET next_index = v.column2, last_access_ms = v.column3,
                 writer_seq = v.column4, closed = v.column5, closed_by_id = v.column6,
                 closed_by_epoch = v.column7, closed_by_seq = v.column8
             FROM (VALUES ",
            chunk.len(),
            8,
            ") AS v WHERE courier_streams.name = v.column1",
        );
        let mut update = sqlx::query(sqlx::AssertSqlSafe(sql));
        for s in chunk {
            let closed_by = s.row.closed_by.as_ref();
            update = update
                .bind(s.name.as_str())
                .bind(s.row.next_index as i64)
                .bind(now)
                .bind(s.row.writer_seq.as_deref())
                .bind(s.row.closed)
                .bind(closed_by.map(|p| p.id.as_str()))
                .bind(closed_by.map(|p| p.epoch as i64))
                .bind(closed_by.map(|p| p.seq as i64));
        }
        update
            .persistent(chunk.len() == 1)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
    }
    Ok(())
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
}
