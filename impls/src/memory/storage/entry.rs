//! One stream's state in the memory storage, and the append/read rules applied to it.

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use courier_traits::storage::{
    AppendOutcome, AppendRequest, Expiry, ForkFrom, JoinedBatch, Joining, JoiningFor, KeyedOutcome,
    KeyedRecord, Offset, ProducerStamp, ReadBatch, ReadFrom, ReadLimits, Record, StorageError,
    StreamConfig, StreamInfo, StreamName,
};
use tokio::sync::watch;

use super::keys::{ExpiredKeys, KeyIndex};
use super::parts::{Part, join, load};
use super::records::{CHUNK, RecordLog};
use crate::rules::{
    AppendContext, AppendPlan, ByteCut, ProducerState, committed_outcome, index_offset,
    plan_append, plan_fork, plan_keyed, window_ms,
};

/// What waiters watch: enough to decide whether to wake.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Signal {
    pub(super) len: u64,
    pub(super) closed: bool,
    pub(super) removed: bool,
}

/// The most bytes a joined read copies while holding the storage's lock (about 20 µs of
/// copying); larger reads are joined after it.
const JOIN_UNDER_LOCK_BYTES: usize = 256 << 10;

/// The records of a large joined read, taken under the storage's lock, to join after it.
#[must_use = "join it into its batch once the storage's lock is released"]
pub(super) struct Unjoined {
    parts: Vec<Part>,
    bytes: usize,
    joining: Joining,
}

impl Unjoined {
    /// Copies the records into `batch`'s body, reading spilled ones (call it with no lock
    /// held).
    pub(super) fn join_into(self, batch: &mut JoinedBatch) -> Result<(), StorageError> {
        batch.body = join(self.parts, self.joining, self.bytes).map_err(spill_read_failed)?;
        Ok(())
    }
}

#[must_use = "read it into its batch once the storage's lock is released"]
/// The records of a read that lie (partly) in spill files: read once the storage's lock is
/// released ([`Unread::read_into`]).
pub(super) struct Unread {
    parts: Vec<Part>,
    first: u64,
    count: usize,
}

impl Unread {
    /// Reads the records into `batch` (call it with no lock held).
    pub(super) fn read_into(self, batch: &mut ReadBatch) -> Result<(), StorageError> {
        let records = load(self.parts, self.count).map_err(spill_read_failed)?;
        batch.records = records
            .into_iter()
            .zip(self.first..)
            .map(|(data, index)| Record {
                offset: index_offset::encode(index),
                data,
            })
            .collect();
        Ok(())
    }
}

/// A spill file that could not be read (its records are still in the journal).
fn spill_read_failed(e: std::io::Error) -> StorageError {
    StorageError::backend(
        false,
        "reading records from the storage's spill file",
        Some(e.into()),
    )
}

/// Where a read ended: the batch fields besides its records.
struct ReadEnd {
    next_offset: Offset,
    up_to_date: bool,
    closed: bool,
}

pub(super) struct StreamEntry {
    pub(super) content_type: String,
    /// The expiry in force (a fork without its own inherits the source's).
    pub(super) expiry: Expiry,
    /// The configuration as requested, for idempotent re-creates.
    pub(super) requested: StreamConfig,
    pub(super) records: RecordLog,
    pub(super) closed: bool,
    /// The producer stamp whose append closed the stream: its retries are duplicates.
    pub(super) closed_by: Option<ProducerStamp>,
    pub(super) producers: HashMap<String, ProducerState>,
    pub(super) writer_seq: Option<String>,
    /// The dedup keys of keyed appends.
    pub(super) keys: KeyIndex,
    /// When a read or append last touched it, in milliseconds on the storage's clock.
    pub(super) last_access_ms: u64,
    /// The fork source, whose live-fork count this stream holds a share of.
    pub(super) parent: Option<StreamName>,
    /// Live forks of this stream.
    pub(super) live_forks: usize,
    /// Deleted (or expired) but kept because forks still read through it.
    pub(super) soft_deleted: bool,
    pub(super) signal: watch::Sender<Signal>,
}

impl StreamEntry {
    pub(super) fn new(
        content_type: String,
        expiry: Expiry,
        requested: StreamConfig,
        records: RecordLog,
        now_ms: u64,
    ) -> StreamEntry {
        let len = records.len() as u64;
        StreamEntry {
            content_type,
            expiry,
            requested,
            records,
            closed: false,
            closed_by: None,
            producers: HashMap::new(),
            writer_seq: None,
            keys: KeyIndex::default(),
            last_access_ms: now_ms,
            parent: None,
            live_forks: 0,
            soft_deleted: false,
            signal: watch::Sender::new(Signal {
                len,
                closed: false,
                removed: false,
            }),
        }
    }

    /// Whether the stream has expired at `now_ms` (milliseconds since the Unix epoch on the
    /// storage's clock). Both windows compare at millisecond precision, as the SQL and Redis
    /// storages store them.
    pub(super) fn is_expired(&self, now_ms: u64) -> bool {
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        match self.expiry {
            Expiry::Never => false,
            Expiry::Ttl(ttl) => now_ms.saturating_sub(self.last_access_ms) >= ms(ttl),
            // A time before 1970 has always passed.
            Expiry::At(at) => now_ms >= at.duration_since(UNIX_EPOCH).map(ms).unwrap_or(0),
        }
    }

    pub(super) fn tail(&self) -> Offset {
        index_offset::encode(self.records.len() as u64)
    }

    pub(super) fn info(&self, name: &StreamName) -> StreamInfo {
        StreamInfo {
            name: name.clone(),
            content_type: self.content_type.clone(),
            expiry: self.expiry,
            next_offset: self.tail(),
            closed: self.closed,
        }
    }

    /// Updates what waiters watch. With nobody waiting the value changes silently: waking
    /// no one still locked each of the channel's eight notifiers on every append. A waiter
    /// subscribes under the storage's lock, which every append holds too, so it either sees
    /// the value as updated or is subscribed before the update and notified.
    fn publish_signal(&self) {
        let len = self.records.len() as u64;
        let closed = self.closed;
        let watched = self.signal.receiver_count() > 0;
        self.signal.send_if_modified(|s| {
            s.len = len;
            s.closed = closed;
            watched
        });
    }

    /// Tells waiters the stream is gone.
    pub(super) fn signal_removed(&self) {
        self.signal.send_modify(|s| s.removed = true);
    }

    /// Resolves `offset` to a record index within this stream.
    pub(super) fn index_of(&self, name: &StreamName, offset: &Offset) -> Result<u64, StorageError> {
        let index = index_offset::decode(name, offset)?;
        if index > self.records.len() as u64 {
            return Err(StorageError::UnknownOffset {
                stream: name.clone(),
                offset: offset.clone(),
            });
        }
        Ok(index)
    }

    /// Applies an append under the shared rules (see [`crate::rules::plan_append`]).
    pub(super) fn append(
        &mut self,
        name: &StreamName,
        request: AppendRequest,
        now_ms: u64,
    ) -> Result<AppendOutcome, StorageError> {
        let tail = self.records.len() as u64;
        let ctx = AppendContext {
            stream: name,
            tail,
            closed: self.closed,
            closed_by: self.closed_by.as_ref(),
            content_type: &self.content_type,
            producer: request
                .producer
                .as_ref()
                .and_then(|p| self.producers.get(&p.id).copied()),
            writer_seq: self.writer_seq.as_deref(),
        };
        let producer = match plan_append(&ctx, &request)? {
            AppendPlan::Reply(outcome) => return Ok(outcome),
            AppendPlan::Commit { producer } => producer,
        };
        // Every check passed: commit data, producer state, writer seq and close flag together.
        let outcome = committed_outcome(tail, &request, producer);
        self.records.extend(request.records);
        if let (Some(stamp), Some(state)) = (&request.producer, producer) {
            self.producers.insert(stamp.id.clone(), state);
        }
        if let Some(seq) = request.writer_seq {
            self.writer_seq = Some(seq);
        }
        if request.close {
            self.closed = true;
            self.closed_by = request.producer;
        }
        self.last_access_ms = now_ms;
        self.publish_signal();
        Ok(outcome)
    }

    /// Applies a keyed append (see [`crate::rules::plan_keyed`]): the new records and their
    /// keys together, after every check passed. Also answers the keys it forgot (expired under
    /// `window`), for the caller to free once it released the storage's lock.
    pub(super) fn append_keyed(
        &mut self,
        name: &StreamName,
        records: Vec<KeyedRecord>,
        window: Duration,
        now_ms: u64,
    ) -> Result<(Vec<KeyedOutcome>, ExpiredKeys), StorageError> {
        if self.closed {
            return Err(StorageError::Closed {
                stream: name.clone(),
                next_offset: self.tail(),
            });
        }
        let window_ms = window_ms(window);
        // Bounds memory by what the window can still match.
        let expired = self.keys.forget_expired(now_ms, window_ms);
        let plan = plan_keyed(&records, |key| self.keys.get(key), now_ms, window);
        let tail = self.records.len() as u64;
        for record in plan.written(&records) {
            self.records.push(record.data.clone());
            self.keys
                .insert(&record.key, &record.tag, now_ms, window_ms);
        }
        if plan.write_count() > 0 {
            self.last_access_ms = now_ms;
            self.publish_signal();
        }
        Ok((plan.outcomes(|n| index_offset::encode(tail + n)), expired))
    }

    pub(super) fn read(
        &mut self,
        name: &StreamName,
        from: Option<&Offset>,
        limits: ReadLimits,
        now_ms: u64,
    ) -> Result<(ReadBatch, Option<Unread>), StorageError> {
        let start = match from {
            Some(offset) => self.index_of(name, offset)?,
            None => 0,
        };
        self.last_access_ms = now_ms;
        let start = usize::try_from(start).unwrap_or(usize::MAX);
        let (count, _) = self.extent(start, limits);
        let (records, unread) = if self.records.resident(start, count) {
            // Sized once: a read of 1000 records would otherwise regrow the list ten times.
            let mut records = Vec::with_capacity(count);
            records.extend(
                self.records
                    .records_from(start)
                    .take(count)
                    .zip(start as u64..)
                    .map(|(data, index)| Record {
                        offset: index_offset::encode(index),
                        data,
                    }),
            );
            (records, None)
        } else {
            let unread = Unread {
                parts: self.records.parts(start, count),
                first: start as u64,
                count,
            };
            (Vec::new(), Some(unread))
        };
        let end = self.end_of_read(start, count);
        let batch = ReadBatch {
            records,
            next_offset: end.next_offset,
            up_to_date: end.up_to_date,
            closed: end.closed,
            content_type: self.content_type.clone(),
        };
        Ok((batch, unread))
    }

    /// A read whose records are copied straight into one body: no record list, no offset per
    /// record, no reference count touched per record. A read of more than
    /// [`JOIN_UNDER_LOCK_BYTES`] takes handles to its records instead, for the caller to join
    /// once the storage's lock is released ([`Unjoined`]): copying megabytes would hold every
    /// other request of the storage for that long.
    pub(super) fn read_joined(
        &mut self,
        name: &StreamName,
        from: &ReadFrom,
        limits: ReadLimits,
        join: JoiningFor,
        now_ms: u64,
    ) -> Result<(JoinedBatch, Option<Unjoined>), StorageError> {
        let start = match from {
            ReadFrom::Start => 0,
            ReadFrom::After(offset) => self.index_of(name, offset)?,
            ReadFrom::Tail => self.records.len() as u64,
        };
        self.last_access_ms = now_ms;
        let start = usize::try_from(start).unwrap_or(usize::MAX);
        let (count, bytes) = self.extent(start, limits);
        let joining = join(&self.content_type);
        // Records back to back in the store are already their body.
        let whole = match joining {
            Joining::Concat => self.records.contiguous(start, count),
            Joining::JsonArray => None,
        };
        let (body, unjoined) = if let Some(body) = whole {
            (body, None)
        } else if bytes <= JOIN_UNDER_LOCK_BYTES && self.records.resident(start, count) {
            let body = match joining {
                // A packed chunk's records in one copy.
                Joining::Concat => {
                    let mut body = BytesMut::with_capacity(bytes);
                    self.records.concat_into(start, count, &mut body);
                    body.freeze()
                }
                Joining::JsonArray => joining.join(self.records.slices(start, count), bytes),
            };
            (body, None)
        } else {
            let unjoined = Unjoined {
                parts: self.records.parts(start, count),
                bytes,
                joining,
            };
            (Bytes::new(), Some(unjoined))
        };
        let end = self.end_of_read(start, count);
        let batch = JoinedBatch {
            body,
            records: count,
            next_offset: end.next_offset,
            up_to_date: end.up_to_date,
            closed: end.closed,
            content_type: self.content_type.clone(),
        };
        Ok((batch, unjoined))
    }

    /// How many records a read from index `start` takes within `limits`, and their bytes: at
    /// most `max_records`, and records while they fit in `max_bytes`, the first one always.
    fn extent(&self, start: usize, limits: ReadLimits) -> (usize, usize) {
        self.records
            .extent(start, limits.max_records, limits.max_bytes)
    }

    /// Where a read of `count` records from index `start` ends.
    fn end_of_read(&self, start: usize, count: usize) -> ReadEnd {
        let end = (start + count) as u64;
        let up_to_date = end >= self.records.len() as u64;
        ReadEnd {
            next_offset: index_offset::encode(end),
            up_to_date,
            closed: up_to_date && self.closed,
        }
    }

    /// The records a fork of this stream inherits (as [`plan_fork`] decides).
    pub(super) fn fork_prefix(
        &self,
        name: &StreamName,
        fork: &ForkFrom,
    ) -> Result<RecordLog, StorageError> {
        let plan = plan_fork(name, self.records.len() as u64, fork)?;
        // `whole` is at most the record count, which fits in memory, so in a usize.
        let whole = usize::try_from(plan.whole).unwrap_or(usize::MAX);
        // Shares the source's full chunks rather than copying millions of record handles.
        let mut prefix = self.records.prefix(whole).map_err(spill_read_failed)?;
        if let Some(wanted) = plan.bytes {
            let mut cut = ByteCut::new(wanted);
            // A chunk's worth at a time: a spilled chunk is read (a fork is rare enough to
            // read under the lock), and a cut of a few bytes reads no more than one chunk.
            let mut at = whole;
            'cut: while cut.wants_more() && at < self.records.len() {
                let count = CHUNK - at % CHUNK;
                for record in self.records.records(at, count).map_err(spill_read_failed)? {
                    if !cut.wants_more() {
                        break 'cut;
                    }
                    cut.push(record);
                }
                at += count;
            }
            prefix.extend(cut.finish()?);
        }
        Ok(prefix)
    }
}
