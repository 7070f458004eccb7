//! Appends to several streams in one transaction: the batches that became ready while the
//! storage's other commits were in flight (see `append_queue.rs`).
//!
//! Why: each transaction costs four round trips (begin, row lock, write, commit) and a commit
//! record, whatever it carries. Across many streams at once every append was its own
//! transaction, so a node spent its time on round trips (72 % of its CPU in the kernel) and
//! Postgres on commits. Here the same four round trips carry every stream of the commit.
//!
//! The rules are those of one stream's batch, decided per stream with its row locked
//! ([`AppendBatch`]). The rows are locked in one statement that skips rows another transaction
//! holds (`FOR UPDATE SKIP LOCKED`): a shared commit never waits for a row lock, so it cannot
//! deadlock (with another node's shared commit, or with a delete that locks a chain of forks
//! from the child up), and one busy stream does not hold up the others. The streams it did not
//! lock (held elsewhere, missing) and the expired ones go the one-stream way after it, which
//! waits for its one row, reaps and refuses as before. Producer states are read after the
//! locks are held, as in a batch of one stream (see `tables.rs`), and the time that expiry and
//! `last_access_ms` are judged by is read once the locks are held, too.

use std::collections::HashMap;

use courier_traits::storage::{StorageError, StreamName};
use sqlx::PgConnection;

use super::errors::db_error;
use super::tables::{load_producers_many, load_unlocked_many};
use crate::append_queue::StreamBatch;
use crate::rules::{AppendBatch, ProducerState, producer_ids};

/// What a shared commit's transaction decided, by index into its batches.
#[derive(Debug, Default)]
pub(super) struct Decided {
    /// Batches that wrote something (their streams' waiters are woken after the commit).
    pub(super) written: Vec<usize>,
    /// Batches left undecided (their row was locked elsewhere or absent, or their stream had
    /// expired): the caller commits each the one-stream way.
    pub(super) left: Vec<usize>,
}

/// Decides every batch whose stream's row it can lock at once, and writes what was accepted,
/// in the open transaction `tx`, with expiry judged at `now()` read after the locks. A deleted
/// stream's appends (`Gone`) are refused here; the rest is left to the caller
/// ([`Decided::left`]).
pub(super) async fn decide_and_write(
    tx: &mut PgConnection,
    batches: &mut [StreamBatch],
    now: impl FnOnce() -> i64,
) -> Result<Decided, StorageError> {
    let names: Vec<&str> = batches.iter().map(|b| b.name.as_str()).collect();
    let mut rows = load_unlocked_many(tx, &names).await?;
    let now = now();
    let (mut wanted_streams, mut wanted_producers) = (Vec::new(), Vec::new());
    for batch in batches
        .iter()
        .filter(|b| rows.contains_key(b.name.as_str()))
    {
        for id in producer_ids(batch.appends.iter().map(|a| &a.request)) {
            wanted_streams.push(batch.name.as_str());
            wanted_producers.push(id);
        }
    }
    let mut stored = load_producers_many(tx, &wanted_streams, &wanted_producers).await?;
    let mut decided = Decided::default();
    let mut writes: Vec<AppendBatch<'_>> = Vec::new();
    for (i, batch) in batches.iter_mut().enumerate() {
        let StreamBatch { name, appends } = batch;
        let name: &StreamName = name;
        match rows.remove(name.as_str()) {
            Some(row) if row.soft_deleted => {
                for append in appends.iter_mut() {
                    append.result = Some(Err(StorageError::Gone {
                        stream: name.clone(),
                    }));
                }
            }
            Some(row) if !row.is_expired(now) => {
                let known: HashMap<String, ProducerState> =
                    producer_ids(appends.iter().map(|a| &a.request))
                        .into_iter()
                        .filter_map(|id| {
                            let key = (name.as_str().to_owned(), id.to_owned());
                            stored.remove(&key).map(|state| (key.1, state))
                        })
                        .collect();
                let mut stream = AppendBatch::new(name, row, known);
                for append in appends.iter_mut() {
                    append.result = Some(stream.decide(&append.request));
                }
                if stream.changed() {
                    decided.written.push(i);
                    writes.push(stream);
                }
            }
            _ => decided.left.push(i),
        }
    }
    if !writes.is_empty() {
        write(tx, &writes, now).await?;
    }
    Ok(decided)
}

/// Records, producer states and stream rows of every written batch, in one statement.
async fn write(
    tx: &mut PgConnection,
    streams: &[AppendBatch<'_>],
    now: i64,
) -> Result<(), StorageError> {
    let (mut record_streams, mut indexes, mut payloads) = (Vec::new(), Vec::new(), Vec::new());
    let (mut producer_streams, mut producers, mut epochs, mut seqs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut row_names = Vec::with_capacity(streams.len());
    let (mut next_indexes, mut writer_seqs, mut closed) = (Vec::new(), Vec::new(), Vec::new());
    let (mut closer_ids, mut closer_epochs, mut closer_seqs) = (Vec::new(), Vec::new(), Vec::new());
    for stream in streams {
        let name = stream.stream().as_str();
        for (i, record) in stream.records().iter().enumerate() {
            record_streams.push(name);
            indexes.push((stream.first_index() + i as u64) as i64);
            payloads.push(&record[..]);
        }
        for (id, state) in stream.changed_producers() {
            producer_streams.push(name);
            producers.push(id);
            epochs.push(state.epoch as i64);
            seqs.push(state.last_seq as i64);
        }
        let row = stream.row();
        let closer = row.closed_by.as_ref();
        row_names.push(name);
        next_indexes.push(row.next_index as i64);
        writer_seqs.push(row.writer_seq.as_deref());
        closed.push(i64::from(row.closed));
        closer_ids.push(closer.map(|p| p.id.as_str()));
        closer_epochs.push(closer.map(|p| p.epoch as i64));
        closer_seqs.push(closer.map(|p| p.seq as i64));
    }
    sqlx::query(
        "WITH records AS (
             INSERT INTO courier_records (stream, idx, data)
             SELECT * FROM unnest($1::TEXT[], $2::BIGINT[], $3::BYTEA[])
         ), producer AS (
             INSERT INTO courier_producers (stream, producer, epoch, last_seq)
             SELECT * FROM unnest($4::TEXT[], $5::TEXT[], $6::BIGINT[], $7::BIGINT[])
             ON CONFLICT (stream, producer) DO UPDATE SET epoch = excluded.epoch, last_seq = excluded.last_seq
         )
         UPDATE courier_streams AS s SET next_index = u.next_index, last_access_ms = $8,
             writer_seq = u.writer_seq, closed = u.closed, closed_by_id = u.closed_by_id,
             closed_by_epoch = u.closed_by_epoch, closed_by_seq = u.closed_by_seq
         FROM unnest($9::TEXT[], $10::BIGINT[], $11::TEXT[], $12::BIGINT[], $13::TEXT[],
                     $14::BIGINT[], $15::BIGINT[])
             AS u (name, next_index, writer_seq, closed, closed_by_id, closed_by_epoch, closed_by_seq)
         WHERE s.name = u.name",
    )
    .bind(&record_streams)
    .bind(&indexes)
    .bind(&payloads)
    .bind(&producer_streams)
    .bind(&producers)
    .bind(&epochs)
    .bind(&seqs)
    .bind(now)
    .bind(&row_names)
    .bind(&next_indexes)
    .bind(&writer_seqs)
    .bind(&closed)
    .bind(&closer_ids)
    .bind(&closer_epochs)
    .bind(&closer_seqs)
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    Ok(())
}
