//! The topic writer: appends each reliable topic's sends with dense offsets, grouping
//! concurrent sends into one storage append, and answers each send once it is durable.
//!
//! One append is in flight at a time. A send that finds none in flight, nothing queued and no
//! other producer active lately appends from its caller's own task: a lone producer's message
//! then goes from the RPC handler to the storage and back without waking the writer task.
//! Every other send waits in the queue for the writer task, which gathers the sends queued
//! while the previous append was in flight into one append (group commit).
//!
//! Every append carries `writer_seq` = the zero-padded dense offset of its first record
//! ([`writer_seq`](crate::catalog::log::writer_seq())). The storage accepts it only above the last
//! one, so a writer whose view of the tail is stale (another node appended, or an append whose
//! answer was lost did commit) gets `WriterSeqRegression`, reads the records after the tail it
//! knows, and retries with the right offsets: one order, no gap, no offset used twice.
//!
//! Group commit needs company: producers that wait for each answer come back one round trip
//! after it, not all at once, so taking only what is queued when the last append returns
//! splits them into several small appends (measured: ~4.6 messages per SQLite commit with 16
//! producers). A batch therefore waits up to `LINGER` for the producers that were active on
//! the topic a moment ago (`Activity`); a lone producer never waits.
//!
//! Each append that succeeds is also handed, as an [`Appended`], to the topic's subscriptions
//! on this node ([`TopicWriter::follow`]), in the appending task's own call and in log order:
//! they deliver from it instead of reading back from storage what was just written (and
//! without a task of theirs woken per append), and fall back to reading the log whenever an
//! [`Appended`] does not continue exactly where they are (another node's append, a full
//! window).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, PoisonError, Weak};
use std::time::Duration;

use courier_impls::grpc::proto::danube::StreamMessage;
use courier_traits::error::{Classify, ErrorClass};
use courier_traits::storage::{
    AppendRequest, Offset, ReadLimits, StorageError, StreamName, StreamStorage,
};
use tokio::sync::{Mutex, Notify, Semaphore, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::catalog::log::{encode_record, writer_seq};

/// How many sends wait for the writer before `append` waits for room.
const QUEUE: usize = 4_096;
/// At most this many messages go into one append.
const MAX_BATCH_MESSAGES: usize = 1_024;
/// An append is closed once its payloads reach about this many bytes.
const MAX_BATCH_BYTES: usize = 8 << 20;
/// The longest a batch waits for the sends of producers that were active a moment ago.
const LINGER: Duration = Duration::from_micros(500);
/// A producer counts as active for this long after a send of its was written: long enough to
/// span a few append round trips, short enough that one that stopped costs few lingers.
const ACTIVE: Duration = Duration::from_millis(20);
/// How often one batch re-reads the tail after losing the writer-sequence race before it
/// gives up (with `Unavailable`, so the client retries).
const MAX_REGRESSIONS: usize = 16;

/// What one append wrote, for the topic's subscriptions on this node (each message already
/// durable).
#[derive(Clone, Debug)]
pub struct Appended {
    /// The tail of the log as the writer knew it before this append: a reader that has read
    /// up to here continues with these messages.
    pub after: Option<Offset>,
    /// The position just before the first message (`None` if the storage did not say).
    pub first_position: Option<Offset>,
    /// The tail of the log after the append.
    pub next_position: Offset,
    /// The dense offset of the first message.
    pub first_offset: u64,
    /// The messages in log order, `msg_id.topic_offset` set.
    pub messages: Vec<StreamMessage>,
}

/// A subscription on this node that takes the writer's appends as they become durable.
pub trait AppendedSink: Send + Sync {
    /// Takes one durable append (appends come in log order). Called in the appending task
    /// under the writer's list of sinks, so it must not block nor append itself. Returns false
    /// once the sink has stopped: the writer then forgets it.
    fn appended(&self, appended: &Appended) -> bool;

    /// The writer has stopped: nothing more comes from it (read the log instead).
    fn writer_stopped(&self);
}

impl Appended {
    /// The dense offset after the last message.
    pub fn end_offset(&self) -> u64 {
        self.first_offset + self.messages.len() as u64
    }

    /// Whether a reader whose next read would start at `position` continues with these
    /// messages.
    pub fn continues(&self, position: &Offset) -> bool {
        self.after.as_ref() == Some(position) || self.first_position.as_ref() == Some(position)
    }
}

/// Why a send was not written.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The storage refused or failed the append.
    #[error("cannot append to {stream}: {source}")]
    Storage {
        /// The topic's log.
        stream: StreamName,
        /// What the storage said (shared by every send of the failed append).
        #[source]
        source: Arc<StorageError>,
    },
    /// Other writers kept appending first; the tail was re-read too often.
    #[error("{stream}: lost the writer-sequence race {MAX_REGRESSIONS} times in a row")]
    Contended {
        /// The topic's log.
        stream: StreamName,
    },
    /// The writer was stopped before the send was written.
    #[error("the writer of {stream} has stopped")]
    Stopped {
        /// The topic's log.
        stream: StreamName,
    },
}

impl Classify for WriteError {
    fn class(&self) -> ErrorClass {
        match self {
            WriteError::Storage { source, .. } => source.class(),
            WriteError::Contended { .. } | WriteError::Stopped { .. } => ErrorClass::TRANSIENT,
        }
    }
}

/// One send waiting for the writer task.
struct Pending {
    message: StreamMessage,
    done: oneshot::Sender<Result<u64, WriteError>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").finish_non_exhaustive()
    }
}

/// What the sends, the writer task and the append in flight share.
struct Shared {
    storage: Arc<dyn StreamStorage>,
    stream: StreamName,
    state: std::sync::Mutex<State>,
    /// Wakes the writer task: a send was queued, or the append in flight ended with sends
    /// queued or the writer stopping.
    wake: Notify,
    /// Room in the queue ([`QUEUE`] permits, handed back as the writer task takes sends);
    /// closed once the writer stops.
    room: Semaphore,
    /// The subscriptions that take each append.
    sinks: std::sync::Mutex<Vec<Weak<dyn AppendedSink>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

/// The writer's state, under a short lock never held across an `.await`.
#[derive(Default)]
struct State {
    /// Sends waiting for the writer task, in arrival order.
    queue: VecDeque<Pending>,
    /// An append is in flight (the writer task's or a send's own): the tail is out with it,
    /// and everything else waits in the queue.
    busy: bool,
    /// The tail as the last append left it (`None`: read it first). Taken by the append in
    /// flight.
    tail: Option<Tail>,
    activity: Activity,
    /// New sends are refused.
    stopped: bool,
}

impl State {
    /// Whether a send of `producer` may append on its own task now: no append in flight,
    /// none queued before it (order), and no other producer active lately (their sends are
    /// gathered by the writer task to share one append).
    fn may_append_alone(&mut self, producer: u64, now: Instant) -> bool {
        !self.busy && self.queue.is_empty() && self.activity.others(producer, now) == 0
    }
}

/// The turn of the append in flight. Dropping it, once the append ended or its caller was
/// dropped mid-append, puts the tail back and lets the next append go; the writer task is
/// woken only if sends are queued or it is stopping.
struct Turn<'a> {
    shared: &'a Shared,
    tail: Option<Tail>,
}

impl Turn<'_> {
    /// Takes the turn; the caller has set `busy`.
    fn new(shared: &Shared, tail: Option<Tail>) -> Turn<'_> {
        Turn { shared, tail }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        // A caller dropped mid-append leaves the tail as it was known before: if the append
        // committed after all, the next one regresses on `writer_seq` and re-reads it.
        let wake = {
            let mut state = self.shared.lock();
            state.tail = self.tail.take();
            state.busy = false;
            !state.queue.is_empty() || state.stopped
        };
        if wake {
            self.shared.wake.notify_one();
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stopped(&self) -> WriteError {
        WriteError::Stopped {
            stream: self.stream.clone(),
        }
    }

    /// Appends `messages` in `turn`, then hands what was written to the subscriptions (before
    /// the turn ends, so they see the appends in log order).
    async fn write(
        &self,
        turn: &mut Turn<'_>,
        messages: Vec<StreamMessage>,
    ) -> Result<u64, WriteError> {
        let written = write_batch(
            self.storage.as_ref(),
            &self.stream,
            &mut turn.tail,
            messages,
        )
        .await
        .inspect_err(|error| {
            tracing::warn!(stream = %self.stream, %error, "reliable append failed");
        })?;
        self.sinks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|sink| sink.upgrade().is_some_and(|sink| sink.appended(&written)));
        Ok(written.first_offset)
    }

    /// Queues `message` for the writer task and waits for its answer.
    async fn enqueue(&self, message: StreamMessage) -> Result<u64, WriteError> {
        self.room
            .acquire()
            .await
            .map_err(|_| self.stopped())?
            .forget();
        let (done, answer) = oneshot::channel();
        {
            let mut state = self.lock();
            if state.stopped {
                return Err(self.stopped());
            }
            state.queue.push_back(Pending { message, done });
        }
        self.wake.notify_one();
        answer.await.unwrap_or_else(|_| Err(self.stopped()))
    }

    /// Takes up to one batch from the queue into `batch` (which may hold sends already).
    fn take_queued(&self, state: &mut State, batch: &mut Batch) {
        let mut taken = 0;
        while !batch.full() {
            let Some(pending) = state.queue.pop_front() else {
                break;
            };
            batch.push(pending);
            taken += 1;
        }
        self.room.add_permits(taken);
    }
}

/// The handle of a topic's writer. Dropping it stops the writer task once the sends already
/// queued are written; [`stop`](Self::stop) does the same and waits for it.
#[derive(Debug)]
pub struct TopicWriter {
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl TopicWriter {
    /// Starts the writer of the log `stream` (which must exist). Must be called within a tokio
    /// runtime.
    pub fn start(storage: Arc<dyn StreamStorage>, stream: StreamName) -> TopicWriter {
        let stop = CancellationToken::new();
        let shared = Arc::new(Shared {
            storage,
            stream,
            state: std::sync::Mutex::new(State::default()),
            wake: Notify::new(),
            room: Semaphore::new(QUEUE),
            sinks: std::sync::Mutex::new(Vec::new()),
        });
        let task = tokio::spawn(run(shared.clone(), stop.clone()));
        TopicWriter {
            shared,
            stop,
            task: Mutex::new(Some(task)),
        }
    }

    /// The log this writer appends to.
    pub fn stream(&self) -> &StreamName {
        &self.shared.stream
    }

    /// Hands the appends made from now on to `sink` as they become durable, until it stops
    /// (answers false) or is dropped; once the writer stops, tells it so (at once if it has).
    pub fn follow(&self, sink: Weak<dyn AppendedSink>) {
        let mut sinks = self
            .shared
            .sinks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // The writer task marks itself stopped before it tells the sinks it holds.
        if self.shared.lock().stopped {
            drop(sinks);
            if let Some(sink) = sink.upgrade() {
                sink.writer_stopped();
            }
            return;
        }
        sinks.retain(|sink| sink.strong_count() > 0);
        sinks.push(sink);
    }

    /// Writes `message` (whose `msg_id` must be set: the writer fills in `topic_offset`) and
    /// returns its dense offset once the storage has made it durable.
    ///
    /// A send that finds no append in flight, nothing queued and no other producer active
    /// lately appends from the caller's own task (one hand-off fewer each way); otherwise it
    /// waits for the writer task, which gathers it with the others into one append.
    /// Cancel-safe: a send dropped mid-append may or may not be stored, and the offsets of
    /// the sends after it stay dense either way.
    ///
    /// Errors: [`WriteError`]; retryable ones are `Unavailable` for the client.
    pub async fn append(&self, message: StreamMessage) -> Result<u64, WriteError> {
        let shared = &*self.shared;
        let producer = producer_of(&message);
        let tail = {
            let mut state = shared.lock();
            if state.stopped {
                return Err(shared.stopped());
            }
            let now = Instant::now();
            if !state.may_append_alone(producer, now) {
                None
            } else {
                state.busy = true;
                state.activity.record(&[producer], now);
                Some(state.tail.take())
            }
        };
        match tail {
            Some(tail) => {
                let mut turn = Turn::new(shared, tail);
                shared.write(&mut turn, vec![message]).await
            }
            None => shared.enqueue(message).await,
        }
    }

    /// Refuses new sends, writes those already queued, waits for the append in flight and for
    /// the task to end.
    pub async fn stop(&self) {
        self.stop.cancel();
        let task = self.task.lock().await.take();
        if let Some(task) = task {
            // A panicked writer has nothing left to flush.
            let _ = task.await;
        }
    }
}

impl Drop for TopicWriter {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Where the log ends, as this writer knows it.
#[derive(Clone)]
struct Tail {
    /// The dense offset the next record gets (= records in the log).
    next: u64,
    /// The storage offset after the last record.
    offset: Option<Offset>,
}

/// The writer task: appends the queued sends, several at a time, whenever no append is in
/// flight; once stopped, refuses new sends and ends after the queued ones and the append in
/// flight.
async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let stopping;
        let taken = {
            let mut state = shared.lock();
            if stop.is_cancelled() && !state.stopped {
                state.stopped = true;
                shared.room.close();
            }
            stopping = state.stopped;
            if state.busy {
                None
            } else if let Some(first) = state.queue.pop_front() {
                shared.room.add_permits(1);
                let mut batch = Batch::new(first);
                shared.take_queued(&mut state, &mut batch);
                state.busy = true;
                let expected = state.activity.expected(Instant::now());
                Some((batch, state.tail.take(), expected))
            } else if state.stopped {
                drop(state);
                let sinks = std::mem::take(
                    &mut *shared.sinks.lock().unwrap_or_else(PoisonError::into_inner),
                );
                for sink in sinks.iter().filter_map(Weak::upgrade) {
                    sink.writer_stopped();
                }
                return;
            } else {
                None
            }
        };
        let Some((mut batch, tail, expected)) = taken else {
            tokio::select! {
                biased;
                () = shared.wake.notified() => {}
                () = stop.cancelled(), if !stopping => {}
            }
            continue;
        };
        let mut turn = Turn::new(&shared, tail);
        if batch.producers() < expected && !stopping {
            // Wait a moment for the producers that were active to come back.
            let deadline = Instant::now() + LINGER;
            while !batch.full() && batch.producers() < expected {
                if tokio::time::timeout_at(deadline, shared.wake.notified())
                    .await
                    .is_err()
                {
                    break;
                }
                shared.take_queued(&mut shared.lock(), &mut batch);
            }
        }
        shared
            .lock()
            .activity
            .record(batch.producer_ids(), Instant::now());
        let (messages, replies): (Vec<_>, Vec<_>) = batch
            .sends
            .into_iter()
            .map(|pending| (pending.message, pending.done))
            .unzip();
        let written = shared.write(&mut turn, messages).await;
        drop(turn);
        match written {
            Ok(first_offset) => {
                for (offset, done) in (first_offset..).zip(replies) {
                    let _ = done.send(Ok(offset));
                }
            }
            Err(error) => {
                for done in replies {
                    let _ = done.send(Err(error.clone()));
                }
            }
        }
    }
}

/// The sends of one append being gathered.
struct Batch {
    sends: Vec<Pending>,
    bytes: usize,
    /// The distinct producers among them (a producer with several sends in flight counts
    /// once: it is the others that are waited for).
    producers: Vec<u64>,
}

impl Batch {
    fn new(first: Pending) -> Batch {
        let mut batch = Batch {
            sends: Vec::new(),
            bytes: 0,
            producers: Vec::new(),
        };
        batch.push(first);
        batch
    }

    fn push(&mut self, pending: Pending) {
        self.bytes += pending.message.payload.len();
        let producer = producer_of(&pending.message);
        if !self.producers.contains(&producer) {
            self.producers.push(producer);
        }
        self.sends.push(pending);
    }

    fn full(&self) -> bool {
        self.sends.len() >= MAX_BATCH_MESSAGES || self.bytes >= MAX_BATCH_BYTES
    }

    fn producers(&self) -> usize {
        self.producers.len()
    }

    fn producer_ids(&self) -> &[u64] {
        &self.producers
    }
}

fn producer_of(message: &StreamMessage) -> u64 {
    message.msg_id.as_ref().map_or(0, |id| id.producer_id)
}

/// The producers whose sends this writer wrote lately, to know how many sends a batch can
/// expect to gather.
#[derive(Default)]
struct Activity {
    last_written: HashMap<u64, Instant>,
}

impl Activity {
    /// How many producers were active within [`ACTIVE`] before `now` (forgetting the others).
    fn expected(&mut self, now: Instant) -> usize {
        self.last_written
            .retain(|_, at| now.saturating_duration_since(*at) < ACTIVE);
        self.last_written.len()
    }

    /// How many producers other than `producer` were active within [`ACTIVE`] before `now`.
    fn others(&mut self, producer: u64, now: Instant) -> usize {
        let active = self.expected(now);
        active - usize::from(self.last_written.contains_key(&producer))
    }

    fn record(&mut self, producers: &[u64], now: Instant) {
        for &producer in producers {
            self.last_written.insert(producer, now);
        }
    }
}

/// Appends `messages` with dense offsets after the tail; returns what was written.
async fn write_batch(
    storage: &dyn StreamStorage,
    stream: &StreamName,
    tail: &mut Option<Tail>,
    mut messages: Vec<StreamMessage>,
) -> Result<Appended, WriteError> {
    for _ in 0..MAX_REGRESSIONS {
        let known = match tail {
            Some(known) => known.clone(),
            None => {
                let start = Tail {
                    next: 0,
                    offset: None,
                };
                let found = read_tail(storage, stream, &start).await?;
                *tail = Some(found.clone());
                found
            }
        };
        let records = (known.next..)
            .zip(messages.iter_mut())
            .map(|(offset, message)| {
                message.msg_id.get_or_insert_default().topic_offset = offset;
                encode_record(message)
            })
            .collect();
        let request = AppendRequest::records(records).with_writer_seq(writer_seq(known.next));
        match storage.append(stream, request).await {
            Ok(outcome) => {
                let first = known.next;
                *tail = Some(Tail {
                    next: first + messages.len() as u64,
                    offset: Some(outcome.next_offset.clone()),
                });
                return Ok(Appended {
                    after: known.offset,
                    first_position: outcome.first_offset,
                    next_position: outcome.next_offset,
                    first_offset: first,
                    messages,
                });
            }
            Err(StorageError::WriterSeqRegression { .. }) => {
                *tail = Some(read_tail(storage, stream, &known).await?);
            }
            // The tail stays as known: if the append committed after all, the next one
            // regresses and re-reads it.
            Err(error) => return Err(storage_failure(stream, error)),
        }
    }
    Err(WriteError::Contended {
        stream: stream.clone(),
    })
}

/// Counts the records after `known` to find the log's current tail.
async fn read_tail(
    storage: &dyn StreamStorage,
    stream: &StreamName,
    from: &Tail,
) -> Result<Tail, WriteError> {
    let mut known = from.clone();
    let limits = ReadLimits {
        max_records: 10_000,
        // Only the count matters; a small byte budget still returns at least one record.
        max_bytes: 1 << 20,
    };
    loop {
        let batch = storage
            .read(stream, known.offset.clone(), limits)
            .await
            .map_err(|error| storage_failure(stream, error))?;
        known.next += batch.records.len() as u64;
        let moved = known.offset.as_ref() != Some(&batch.next_offset);
        known.offset = Some(batch.next_offset);
        if batch.up_to_date || !moved {
            return Ok(known);
        }
    }
}

fn storage_failure(stream: &StreamName, error: StorageError) -> WriteError {
    WriteError::Storage {
        stream: stream.clone(),
        source: Arc::new(error),
    }
}
