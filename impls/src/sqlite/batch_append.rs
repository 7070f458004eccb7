//! Appends of one group-commit batch, applied together: each stream's row read once, the
//! append rules decided in Rust for each append in queue order, then the records, producer
//! states and stream rows written through cached prepared statements.
//!
//! A refused append writes nothing (the rules run before any write), so no savepoint is
//! needed; a database error fails the whole batch.

use std::collections::HashMap;

use bytes::Bytes;
use courier_traits::storage::{
    AppendOutcome, AppendRequest, ProducerStamp, StorageError, StreamName,
};
use rusqlite::{Connection, OptionalExtension};

use super::errors::db_error;
use super::recent::Change;
use super::row::{StreamRow, live, load};
use crate::rules::{AppendContext, AppendPlan, ProducerState, committed_outcome, plan_append};

/// One queued append and, once decided, its result.
pub(super) struct QueuedAppend {
    pub(super) name: StreamName,
    pub(super) request: AppendRequest,
    pub(super) result: Option<Result<AppendOutcome, StorageError>>,
}

/// Decides and writes `appends` inside the open transaction, with expiry judged at `now`.
/// Each append's own result is stored in it; `Err` is a database failure that must abort the
/// whole batch. Returns what the streams gained, for the cache once the batch commits (nothing
/// unless `caching`).
pub(super) fn apply(
    conn: &Connection,
    appends: &mut [&mut QueuedAppend],
    now: i64,
    caching: bool,
) -> Result<Vec<Change>, StorageError> {
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
    for name in &names {
        match live(name, load(conn, name)?, now) {
            Ok(row) => streams.push(StreamState::new(name, row)),
            Err(refusal) => {
                for &i in &members[name] {
                    appends[i].result = Some(Err(same_refusal(&refusal, name)));
                }
            }
        }
    }
    for stream in &mut streams {
        for &i in &members[stream.name] {
            let result = stream.decide(conn, &appends[i].request)?;
            appends[i].result = Some(result);
        }
    }
    write(conn, &streams, now)?;
    Ok(streams
        .into_iter()
        .filter(|s| caching && s.changed)
        .map(|s| s.into_change(now))
        .collect())
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

/// Inserts `records` into `stream` at indexes `first..`.
pub(super) fn insert_records<'r>(
    conn: &Connection,
    stream: &StreamName,
    first: u64,
    records: impl IntoIterator<Item = &'r [u8]>,
) -> Result<(), StorageError> {
    let mut insert = conn
        .prepare_cached("INSERT INTO courier_records (stream, idx, data) VALUES (?1, ?2, ?3)")
        .map_err(db_error)?;
    for (i, data) in records.into_iter().enumerate() {
        insert
            .execute((stream.as_str(), (first + i as u64) as i64, data))
            .map_err(db_error)?;
    }
    Ok(())
}

/// Writes what the batch's accepted appends changed: records, producer states, stream rows.
fn write(conn: &Connection, streams: &[StreamState<'_>], now: i64) -> Result<(), StorageError> {
    let mut upsert_producer = conn
        .prepare_cached(
            "INSERT INTO courier_producers (stream, producer, epoch, last_seq) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (stream, producer) DO UPDATE SET epoch = excluded.epoch, last_seq = excluded.last_seq",
        )
        .map_err(db_error)?;
    let mut update_stream = conn
        .prepare_cached(
            "UPDATE courier_streams SET next_index = ?2, last_access_ms = ?3, writer_seq = ?4,
                 closed = ?5, closed_by_id = ?6, closed_by_epoch = ?7, closed_by_seq = ?8
             WHERE name = ?1",
        )
        .map_err(db_error)?;
    for s in streams.iter().filter(|s| s.changed) {
        insert_records(
            conn,
            s.name,
            s.first_index,
            s.records.iter().map(|r| &r[..]),
        )?;
        for id in &s.changed_producers {
            if let Some(Some(state)) = s.producers.get(id) {
                upsert_producer
                    .execute((
                        s.name.as_str(),
                        id.as_str(),
                        state.epoch as i64,
                        state.last_seq as i64,
                    ))
                    .map_err(db_error)?;
            }
        }
        let closed_by = s.row.closed_by.as_ref();
        update_stream
            .execute((
                s.name.as_str(),
                s.row.next_index as i64,
                now,
                s.row.writer_seq.as_deref(),
                s.row.closed,
                closed_by.map(|p| p.id.as_str()),
                closed_by.map(|p| p.epoch as i64),
                closed_by.map(|p| p.seq as i64),
            ))
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
    fn decide(
        &mut self,
        conn: &Connection,
        request: &AppendRequest,
    ) -> Result<Result<AppendOutcome, StorageError>, StorageError> {
        let producer = match &request.producer {
            None => None,
            Some(stamp) => self.producer(conn, stamp)?,
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

    /// What this stream gained, as the cache learns it. The records are copied: a payload may
    /// be a slice of a larger request buffer, which the cache must not keep alive.
    fn into_change(self, now: i64) -> Change {
        let mut row = self.row;
        row.last_access_ms = now;
        Change::Appended {
            name: self.name.clone(),
            row,
            first: self.first_index,
            records: self
                .records
                .iter()
                .map(|r| Bytes::copy_from_slice(r))
                .collect(),
        }
    }

    /// The stored state of a producer, read once per batch.
    fn producer(
        &mut self,
        conn: &Connection,
        stamp: &ProducerStamp,
    ) -> Result<Option<ProducerState>, StorageError> {
        if let Some(known) = self.producers.get(&stamp.id) {
            return Ok(*known);
        }
        let stored = conn
            .prepare_cached(
                "SELECT epoch, last_seq FROM courier_producers WHERE stream = ?1 AND producer = ?2",
            )
            .and_then(|mut select| {
                select
                    .query_row((self.name.as_str(), stamp.id.as_str()), |r| {
                        Ok(ProducerState {
                            epoch: r.get::<_, i64>(0)? as u64,
                            last_seq: r.get::<_, i64>(1)? as u64,
                        })
                    })
                    .optional()
            })
            .map_err(db_error)?;
        self.producers.insert(stamp.id.clone(), stored);
        Ok(stored)
    }
}
