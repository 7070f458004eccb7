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
use super::recent::{Change, Recent};
use super::row::{live, load};
use crate::rules::{AppendBatch, ProducerState};

/// One queued append and, once decided, its result.
pub(super) struct QueuedAppend {
    pub(super) name: StreamName,
    pub(super) request: AppendRequest,
    pub(super) result: Option<Result<AppendOutcome, StorageError>>,
}

/// Decides and writes `appends` inside the open transaction, with expiry judged at `now`.
/// Each append's own result is stored in it; `Err` is a database failure that must abort the
/// whole batch. Stream rows come from `committed` when given (nothing in this transaction
/// changed them yet, see `writer.rs`), else from the database. Returns what the streams
/// gained, for the cache once the batch commits (nothing unless `caching`).
pub(super) fn apply(
    conn: &Connection,
    appends: &mut [&mut QueuedAppend],
    now: i64,
    caching: bool,
    committed: Option<&Recent>,
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
        let row = match committed.and_then(|recent| recent.committed_row(name)) {
            Some(row) => Some(row),
            None => load(conn, name)?,
        };
        match live(name, row, now) {
            // Producer states are read only when a request names one (see below).
            Ok(row) => streams.push(AppendBatch::new(name, row, HashMap::new())),
            Err(refusal) => {
                for &i in &members[name] {
                    appends[i].result = Some(Err(same_refusal(&refusal, name)));
                }
            }
        }
    }
    for stream in &mut streams {
        for &i in &members[stream.stream()] {
            let request = &appends[i].request;
            if let Some(stamp) = &request.producer
                && !stream.knows_producer(&stamp.id)
            {
                let stored = stored_producer(conn, stream.stream(), stamp)?;
                stream.learn_producer(&stamp.id, stored);
            }
            appends[i].result = Some(stream.decide(request));
        }
    }
    write(conn, &streams, now)?;
    Ok(streams
        .iter()
        .filter(|s| caching && s.changed())
        .map(|s| change_of(s, now))
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
fn write(conn: &Connection, streams: &[AppendBatch<'_>], now: i64) -> Result<(), StorageError> {
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
    for s in streams.iter().filter(|s| s.changed()) {
        let name = s.stream();
        insert_records(
            conn,
            name,
            s.first_index(),
            s.records().iter().map(|r| &r[..]),
        )?;
        for (id, state) in s.changed_producers() {
            upsert_producer
                .execute((name.as_str(), id, state.epoch as i64, state.last_seq as i64))
                .map_err(db_error)?;
        }
        let row = s.row();
        let closed_by = row.closed_by.as_ref();
        update_stream
            .execute((
                name.as_str(),
                row.next_index as i64,
                now,
                row.writer_seq.as_deref(),
                row.closed,
                closed_by.map(|p| p.id.as_str()),
                closed_by.map(|p| p.epoch as i64),
                closed_by.map(|p| p.seq as i64),
            ))
            .map_err(db_error)?;
    }
    Ok(())
}

/// What `batch`'s stream gained, as the cache learns it. The records are copied: a payload may
/// be a slice of a larger request buffer, which the cache must not keep alive.
fn change_of(batch: &AppendBatch<'_>, now: i64) -> Change {
    let mut row = batch.row().clone();
    row.last_access_ms = now;
    Change::Appended {
        name: batch.stream().clone(),
        row,
        first: batch.first_index(),
        records: batch
            .records()
            .iter()
            .map(|r| Bytes::copy_from_slice(r))
            .collect(),
    }
}

/// The stored state of producer `stamp.id` on `stream` (`None`: not stored).
fn stored_producer(
    conn: &Connection,
    stream: &StreamName,
    stamp: &ProducerStamp,
) -> Result<Option<ProducerState>, StorageError> {
    conn.prepare_cached(
        "SELECT epoch, last_seq FROM courier_producers WHERE stream = ?1 AND producer = ?2",
    )
    .and_then(|mut select| {
        select
            .query_row((stream.as_str(), stamp.id.as_str()), |r| {
                Ok(ProducerState {
                    epoch: r.get::<_, i64>(0)? as u64,
                    last_seq: r.get::<_, i64>(1)? as u64,
                })
            })
            .optional()
    })
    .map_err(db_error)
}
