//! Appends to several streams in one transaction: the batches that became ready while the
//! storage's other commits were in flight (see `append_queue.rs`).
//!
//! Why: each transaction costs four round trips (begin, row lock, write, commit) and a commit
//! record, whatever it carries. Across many streams at once every append was its own
//! transaction, so a node spent its time on round trips (72 % of its CPU in the kernel) and
//! Postgres on commits. Here the same four round trips carry every stream of the commit.
//!
//! The rules are those of one stream's batch, decided per stream with its row locked
//! ([`AppendBatch`]): rows are locked in name order in one statement, so shared commits of two
//! nodes wait for each other instead of deadlocking; producer states are read after the locks
//! are held, as in a batch of one stream (see `tables.rs`).

use std::collections::HashMap;

use courier_traits::storage::{StorageError, StreamName};
use sqlx::PgConnection;

use super::errors::db_error;
use super::tables::{load_locked_many, load_producers_many};
use crate::append_queue::StreamBatch;
use crate::rules::{AppendBatch, ProducerState, producer_ids};

/// What a shared commit's transaction decided, by index into its batches.
#[derive(Debug, Default)]
pub(super) struct Decided {
    /// Batches that wrote something (their streams' waiters are woken after the commit).
    pub(super) written: Vec<usize>,
    /// Batches whose stream had expired: the caller reaps it after the commit and answers
    /// `NotFound`.
    pub(super) expired: Vec<usize>,
}

/// Decides every batch with its stream's row locked and writes what was accepted, in the open
/// transaction `tx`, with expiry judged at `now`. A missing or deleted stream's appends are
/// refused here; an expired one's are left to the caller ([`Decided::expired`]).
pub(super) async fn decide_and_write(
    tx: &mut PgConnection,
    batches: &mut [StreamBatch],
    now: i64,
) -> Result<Decided, StorageError> {
    let names: Vec<&str> = batches.iter().map(|b| b.name.as_str()).collect();
    let mut rows = load_locked_many(tx, &names).await?;
    let (mut wanted_streams, mut wanted_producers) = (Vec::new(), Vec::new());
    for batch in batches.iter() {
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
        let gone = match rows.remove(name.as_str()) {
            Some(row) if row.soft_deleted => true,
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
                continue;
            }
            Some(_) => {
                decided.expired.push(i);
                continue;
            }
            None => false,
        };
        for append in appends.iter_mut() {
            let stream = name.clone();
            append.result = Some(Err(if gone {
                StorageError::Gone { stream }
            } else {
                StorageError::NotFound { stream }
            }));
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
