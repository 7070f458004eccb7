//! [`MemoryStreamStorage`]: an in-process [`StreamStorage`].

mod entry;
mod journal;
mod keys;
mod parts;
mod records;
mod replay;
#[cfg_attr(not(feature = "log"), allow(dead_code))]
mod residency;
#[cfg_attr(not(feature = "log"), allow(dead_code))]
mod spill;

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use courier_traits::clock::{Clock, system_clock};
use courier_traits::storage::{
    AppendOutcome, AppendRequest, CreateOutcome, JoinedBatch, JoiningFor, KeyedOutcome,
    KeyedRecord, Offset, ReadBatch, ReadFrom, ReadLimits, StorageCapabilities, StorageError,
    StreamConfig, StreamInfo, StreamName, StreamStorage, WaitOutcome,
};

use crate::rules::{
    ChainLink, ForkSource, Removal, RemoveChain, check_record_sizes, fork_settings, own_settings,
    reject_self_fork, validate_append, validate_keyed,
};
use entry::StreamEntry;
#[cfg(feature = "log")]
pub(crate) use journal::Taken;
#[cfg_attr(not(feature = "log"), allow(dead_code, unused_imports))]
pub(crate) use journal::{JournalBuffer, Op, ReplayOp};
#[cfg(feature = "log")]
pub(crate) use residency::Residency;
#[cfg(feature = "log")]
pub(crate) use spill::Spiller;

/// Settings of a [`MemoryStreamStorage`]: read the fields, build with [`Default`] and the
/// `with_*` setters.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MemoryStorageConfig {
    /// Largest single record accepted.
    pub max_record_bytes: usize,
    /// The clock expiry is decided against (default: the system clock).
    pub clock: Arc<dyn Clock>,
}

impl Default for MemoryStorageConfig {
    fn default() -> Self {
        MemoryStorageConfig {
            max_record_bytes: 64 << 20,
            clock: system_clock(),
        }
    }
}

impl MemoryStorageConfig {
    /// Sets [`max_record_bytes`](Self::max_record_bytes) (default 64 MiB).
    pub fn with_max_record_bytes(mut self, bytes: usize) -> MemoryStorageConfig {
        self.max_record_bytes = bytes;
        self
    }

    /// Decides expiry against `clock` (a test's manual clock) instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> MemoryStorageConfig {
        self.clock = clock;
        self
    }
}

/// Streams held in this process's memory: complete against the [`StreamStorage`] semantics
/// (producers, writer sequence, keyed appends, forks, TTL and expiry, close, delete), but nothing survives the
/// process. Clones share the same streams.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), courier_traits::StorageError> {
/// use courier_impls::memory::MemoryStreamStorage;
/// use courier_traits::storage::*;
///
/// let store = MemoryStreamStorage::new();
/// let name = StreamName::new("chat")?;
/// store.create(&name, StreamConfig::with_content_type("text/plain"), vec![]).await?;
/// store.append(&name, AppendRequest::record("hi")).await?;
/// let batch = store.read(&name, None, ReadLimits::default()).await?;
/// assert_eq!(&batch.records[0].data[..], b"hi");
/// assert!(batch.up_to_date);
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct MemoryStreamStorage {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    config: MemoryStorageConfig,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    streams: HashMap<StreamName, StreamEntry>,
    /// When `create` last swept, in milliseconds on the storage's clock.
    last_sweep_ms: Option<u64>,
    /// Where committed changes are journaled, for the log storage.
    journal: Option<JournalBuffer>,
    /// Applying a journal again: nothing expires by the clock (every removal is in the
    /// journal, at the point it was made).
    replaying: bool,
    /// Where sealed chunks queue to be spilled, for the log storage ([`residency`]).
    residency: Option<Arc<residency::Residency>>,
}

/// The storage's state, locked; releasing it publishes what the call journaled.
struct Locked<'a>(MutexGuard<'a, State>);

impl Deref for Locked<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.0
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.0
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        if let Some(journal) = &self.0.journal {
            journal.publish();
        }
    }
}

/// How often (in milliseconds) `create` sweeps out expired streams nobody touched again.
const SWEEP_INTERVAL_MS: u64 = 1_000;

impl State {
    /// Removes `name` if it expired (soft-deleting it if forks still read through it).
    fn reap_if_expired(&mut self, name: &StreamName, now: u64) {
        if self.replaying {
            return;
        }
        let expired = self
            .streams
            .get(name)
            .is_some_and(|e| !e.soft_deleted && e.is_expired(now));
        if expired {
            self.remove(name);
        }
    }

    fn sweep(&mut self, now: u64) {
        if self.replaying
            || self
                .last_sweep_ms
                .is_some_and(|t| now.saturating_sub(t) < SWEEP_INTERVAL_MS)
        {
            return;
        }
        self.last_sweep_ms = Some(now);
        let expired: Vec<StreamName> = self
            .streams
            .iter()
            .filter(|(_, e)| !e.soft_deleted && e.is_expired(now))
            .map(|(n, _)| n.clone())
            .collect();
        for name in expired {
            self.remove(&name);
        }
    }

    /// Deletes a stream: soft while forks live, else for real, releasing its fork source (and
    /// the source's source, up the chain, when they were only kept for this fork), as
    /// [`RemoveChain`] decides.
    fn remove(&mut self, name: &StreamName) {
        self.record(|| Op::Remove { name });
        let mut chain = RemoveChain::new(name);
        while let Some(current) = chain.next() {
            let link = self.streams.get(&current).map(|entry| ChainLink {
                live_forks: i64::try_from(entry.live_forks).unwrap_or(i64::MAX),
                parent: entry.parent.clone(),
            });
            match chain.decide(link) {
                None => break,
                Some(Removal::Soft) => {
                    if let Some(entry) = self.streams.get_mut(&current) {
                        entry.soft_deleted = true;
                        entry.signal_removed();
                    }
                }
                Some(Removal::Hard { parent }) => {
                    if let Some(entry) = self.streams.remove(&current) {
                        entry.signal_removed();
                    }
                    if let Some(parent) = parent
                        && let Some(source) = self.streams.get_mut(&parent)
                    {
                        source.live_forks = source.live_forks.saturating_sub(1);
                        let left = i64::try_from(source.live_forks).unwrap_or(i64::MAX);
                        chain.released(&parent, source.soft_deleted, left);
                    }
                }
            }
        }
    }

    /// Creates `name` at `now` (after the caller swept and reaped): the rules of
    /// [`StreamStorage::create`].
    fn create(
        &mut self,
        name: &StreamName,
        config: StreamConfig,
        initial: Vec<Bytes>,
        now: u64,
    ) -> Result<CreateOutcome, StorageError> {
        if let Some(existing) = self.streams.get(name) {
            if existing.soft_deleted {
                return Err(StorageError::ConfigConflict {
                    stream: name.clone(),
                    reason: "a deleted stream is kept under this name for its forks".into(),
                });
            }
            return match config_difference(existing, &config) {
                Some(reason) => Err(StorageError::ConfigConflict {
                    stream: name.clone(),
                    reason: reason.into(),
                }),
                None => Ok(CreateOutcome::AlreadyExists(existing.info(name))),
            };
        }

        // The full chunks a fork shares with its source are its source's to spill.
        let mut shared = 0;
        let mut entry = match &config.fork {
            None => {
                let (content_type, expiry) = own_settings(&config);
                StreamEntry::new(content_type, expiry, config.clone(), initial.into(), now)
            }
            Some(fork) => {
                reject_self_fork(name, fork)?;
                self.reap_if_expired(&fork.source, now);
                let source = match self.streams.get(&fork.source) {
                    None => Err(StorageError::NotFound {
                        stream: fork.source.clone(),
                    }),
                    Some(s) if s.soft_deleted => Err(StorageError::Gone {
                        stream: fork.source.clone(),
                    }),
                    Some(s) => Ok(s),
                }
                .map_err(|e| e.for_fork_source(&fork.source))?;
                let (content_type, expiry) = fork_settings(
                    name,
                    &config,
                    ForkSource {
                        content_type: &source.content_type,
                        expiry: source.expiry,
                    },
                )?;
                let mut records = source.fork_prefix(&fork.source, fork)?;
                shared = records.sealed_len();
                records.extend(initial);
                let mut entry =
                    StreamEntry::new(content_type, expiry, config.clone(), records, now);
                entry.parent = Some(fork.source.clone());
                entry
            }
        };
        if let Some(parent) = &entry.parent
            && let Some(source) = self.streams.get_mut(parent)
        {
            source.live_forks += 1;
        }
        entry.closed = config.closed;
        entry.signal.send_modify(|s| s.closed = config.closed);
        let info = entry.info(name);
        self.streams.insert(name.clone(), entry);
        self.announce_sealed(name, shared);
        Ok(CreateOutcome::Created(info))
    }

    /// Appends at `now` (the rules of [`StreamStorage::append`]), journaling the append unless
    /// it is refused or a duplicate.
    fn append(
        &mut self,
        name: &StreamName,
        request: AppendRequest,
        now: u64,
    ) -> Result<AppendOutcome, StorageError> {
        // With a journal, an expiry found here is journaled before the append (which then
        // fails), not inside what a refusal rolls back. (Without one, `live` reaps as ever.)
        if self.journal.is_some() {
            self.reap_if_expired(name, now);
        }
        let mark = self.record(|| Op::Append {
            name,
            request: &request,
            now_ms: now,
        });
        let sealed = self.sealed_len(name);
        let outcome = self
            .live(name, now)
            .and_then(|entry| entry.append(name, request, now));
        if matches!(&outcome, Ok(done) if !done.duplicate) {
            self.announce_sealed(name, sealed);
        } else {
            self.rollback(mark);
        }
        outcome
    }

    /// A keyed append at `now` (the rules of [`StreamStorage::append_keyed`]), journaled
    /// unless refused.
    fn append_keyed(
        &mut self,
        stream: &StreamName,
        records: Vec<KeyedRecord>,
        window: Duration,
        now: u64,
    ) -> Result<(Vec<KeyedOutcome>, keys::ExpiredKeys), StorageError> {
        if self.journal.is_some() {
            self.reap_if_expired(stream, now);
        }
        let mark = self.record(|| Op::Keyed {
            name: stream,
            records: &records,
            window,
            now_ms: now,
        });
        let sealed = self.sealed_len(stream);
        let outcome = self
            .live(stream, now)
            .and_then(|entry| entry.append_keyed(stream, records, window, now));
        if outcome.is_err() {
            self.rollback(mark);
        } else {
            self.announce_sealed(stream, sealed);
        }
        outcome
    }

    /// How many full chunks stream `name` holds (none if it does not exist), when the storage
    /// spills (0 otherwise: no lookup per append for nothing).
    fn sealed_len(&self, name: &StreamName) -> usize {
        if self.residency.is_none() {
            return 0;
        }
        self.streams
            .get(name)
            .map_or(0, |entry| entry.records.sealed_len())
    }

    /// Queues the full chunks of `name` from the `from`th on to be spilled, when the storage
    /// spills (the chunks an operation sealed: it had `from` before it).
    fn announce_sealed(&self, name: &StreamName, from: usize) {
        let (Some(residency), Some(entry)) = (&self.residency, self.streams.get(name)) else {
            return;
        };
        for index in from..entry.records.sealed_len() {
            if let Some(chunk) = entry.records.sealed(index) {
                residency.admit(name, index, chunk);
            }
        }
    }

    /// Journals the operation `op` makes, if this storage keeps a journal; answers where to
    /// roll back to if the rules then refuse it.
    fn record<'a>(&mut self, op: impl FnOnce() -> Op<'a>) -> Option<usize> {
        let journal = self.journal.as_mut()?;
        let mark = journal.mark();
        journal.record(&op());
        Some(mark)
    }

    /// Takes back what was journaled since `mark` (a call the rules refused).
    fn rollback(&mut self, mark: Option<usize>) {
        if let (Some(journal), Some(mark)) = (self.journal.as_mut(), mark) {
            journal.rollback(mark);
        }
    }

    /// The live (not expired at `now`, not deleted) stream `name`.
    fn live(&mut self, name: &StreamName, now: u64) -> Result<&mut StreamEntry, StorageError> {
        self.reap_if_expired(name, now);
        match self.streams.get_mut(name) {
            None => Err(StorageError::NotFound {
                stream: name.clone(),
            }),
            Some(e) if e.soft_deleted => Err(StorageError::Gone {
                stream: name.clone(),
            }),
            Some(e) => Ok(e),
        }
    }
}

impl MemoryStreamStorage {
    /// A storage with default settings.
    pub fn new() -> MemoryStreamStorage {
        MemoryStreamStorage::default()
    }

    /// A storage with these settings.
    pub fn with_config(config: MemoryStorageConfig) -> MemoryStreamStorage {
        MemoryStreamStorage {
            inner: Arc::new(Inner {
                config,
                state: Mutex::default(),
            }),
        }
    }

    /// How many streams are held, including deleted ones kept for their forks.
    pub fn stream_count(&self) -> usize {
        self.state().streams.len()
    }

    /// The time expiry is decided against.
    fn now(&self) -> u64 {
        self.inner.config.clock.now_ms()
    }

    // A poisoned lock means a panic elsewhere mid-operation; every mutation here completes its
    // checks before it changes anything, so the state is still consistent.
    /// Makes the chunks this storage seals from now on queue in `residency`, to be spilled
    /// with [`MemoryStreamStorage::spill_over_budget`] (the log storage).
    #[cfg(feature = "log")]
    pub(crate) fn spill_into(&self, residency: Arc<residency::Residency>) {
        self.state().residency = Some(residency);
    }

    /// Spills the oldest sealed chunks with `spiller` while the resident ones are over the
    /// budget of the storage's residency (nothing if it has none). The writing happens with
    /// the storage unlocked; the lock is taken only to put each spilled chunk in place.
    #[cfg(feature = "log")]
    pub(crate) fn spill_over_budget(&self, spiller: &mut spill::Spiller) {
        let Some(residency) = self.state().residency.clone() else {
            return;
        };
        while let Some(victim) = residency.over_budget() {
            let Some(spilled) = residency::spill(spiller, &victim) else {
                continue;
            };
            let mut state = self.state();
            if let Some(entry) = state.streams.get_mut(&victim.stream) {
                entry
                    .records
                    .replace_sealed(victim.index, &victim.chunk, spilled);
            }
        }
    }

    /// How many of stream `name`'s full chunks are spilled.
    #[cfg(all(test, feature = "log"))]
    pub(crate) fn spilled_chunks(&self, name: &StreamName) -> usize {
        let state = self.state();
        let Some(entry) = state.streams.get(name) else {
            return 0;
        };
        (0..entry.records.sealed_len())
            .filter(|&i| {
                entry
                    .records
                    .sealed(i)
                    .is_some_and(|c| matches!(c.as_ref(), records::Sealed::Spilled { .. }))
            })
            .count()
    }

    fn state(&self) -> Locked<'_> {
        Locked(
            self.inner
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

/// Why an existing stream's configuration differs from a create request, if it does.
fn config_difference(existing: &StreamEntry, wanted: &StreamConfig) -> Option<&'static str> {
    if wanted
        .content_type
        .as_ref()
        .is_some_and(|ct| *ct != existing.content_type)
    {
        Some("content type differs")
    } else if wanted.expiry != existing.requested.expiry {
        Some("TTL or expiry differs")
    } else if wanted.closed != existing.closed {
        Some("closed flag differs")
    } else if wanted.fork != existing.requested.fork {
        Some("fork origin differs")
    } else {
        None
    }
}

#[async_trait]
impl StreamStorage for MemoryStreamStorage {
    async fn create(
        &self,
        name: &StreamName,
        config: StreamConfig,
        initial: Vec<Bytes>,
    ) -> Result<CreateOutcome, StorageError> {
        check_record_sizes(&initial, self.inner.config.max_record_bytes)?;
        let now = self.now();
        let mut state = self.state();
        state.sweep(now);
        state.reap_if_expired(name, now);
        // An expired fork source is journaled as removed before the create, which then fails.
        if let Some(fork) = &config.fork {
            state.reap_if_expired(&fork.source, now);
        }
        let mark = state.record(|| Op::Create {
            name,
            config: &config,
            initial: &initial,
            now_ms: now,
        });
        let outcome = state.create(name, config, initial, now);
        if !matches!(outcome, Ok(CreateOutcome::Created(_))) {
            state.rollback(mark);
        }
        outcome
    }

    async fn append(
        &self,
        name: &StreamName,
        request: AppendRequest,
    ) -> Result<AppendOutcome, StorageError> {
        validate_append(&request, self.inner.config.max_record_bytes)?;
        let now = self.now();
        let mut state = self.state();
        state.append(name, request, now)
    }

    async fn append_keyed(
        &self,
        stream: &StreamName,
        records: Vec<KeyedRecord>,
        window: Duration,
    ) -> Result<Vec<KeyedOutcome>, StorageError> {
        validate_keyed(&records, self.inner.config.max_record_bytes)?;
        let now = self.now();
        let (outcomes, expired) = self.state().append_keyed(stream, records, window, now)?;
        // The lock is released: other writers go on while the expired keys are freed.
        expired.release();
        Ok(outcomes)
    }

    async fn read(
        &self,
        name: &StreamName,
        from: Option<Offset>,
        limits: ReadLimits,
    ) -> Result<ReadBatch, StorageError> {
        let now = self.now();
        let (mut batch, unread) =
            self.state()
                .live(name, now)?
                .read(name, from.as_ref(), limits, now)?;
        // The lock is released: spilled records are read from their file.
        if let Some(records) = unread {
            records.read_into(&mut batch)?;
        }
        Ok(batch)
    }

    async fn read_joined(
        &self,
        name: &StreamName,
        from: ReadFrom,
        limits: ReadLimits,
        join: JoiningFor,
    ) -> Result<JoinedBatch, StorageError> {
        let now = self.now();
        let (mut batch, unjoined) = self
            .state()
            .live(name, now)?
            .read_joined(name, &from, limits, join, now)?;
        // The lock is released: a large read is copied without holding up other requests.
        if let Some(records) = unjoined {
            records.join_into(&mut batch)?;
        }
        Ok(batch)
    }

    async fn wait(
        &self,
        name: &StreamName,
        after: &Offset,
        timeout: Duration,
    ) -> Result<WaitOutcome, StorageError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let (index, mut signal) = {
            let now = self.now();
            let mut state = self.state();
            let entry = state.live(name, now)?;
            (entry.index_of(name, after)?, entry.signal.subscribe())
        };
        loop {
            {
                let now = *signal.borrow_and_update();
                if now.removed {
                    return Err(StorageError::NotFound {
                        stream: name.clone(),
                    });
                }
                if now.len > index {
                    return Ok(WaitOutcome::Ready);
                }
                if now.closed {
                    return Ok(WaitOutcome::Closed);
                }
            }
            match tokio::time::timeout_at(deadline, signal.changed()).await {
                Err(_elapsed) => return Ok(WaitOutcome::TimedOut),
                // The sender went away with the stream.
                Ok(Err(_)) => {
                    return Err(StorageError::NotFound {
                        stream: name.clone(),
                    });
                }
                Ok(Ok(())) => {}
            }
        }
    }

    async fn head(&self, name: &StreamName) -> Result<StreamInfo, StorageError> {
        let now = self.now();
        let mut state = self.state();
        let entry = state.live(name, now)?;
        Ok(entry.info(name))
    }

    async fn delete(&self, name: &StreamName) -> Result<(), StorageError> {
        let now = self.now();
        let mut state = self.state();
        state.live(name, now)?;
        state.remove(name);
        Ok(())
    }

    fn capabilities(&self) -> StorageCapabilities {
        StorageCapabilities {
            ttl: true,
            producers: true,
            forks: true,
            keyed_append: true,
            max_record_bytes: Some(self.inner.config.max_record_bytes),
            ..StorageCapabilities::NONE
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use courier_traits::clock::ManualClock;
    use courier_traits::storage::{Expiry, Joining};

    use super::*;

    fn storage(clock: &ManualClock) -> MemoryStreamStorage {
        MemoryStreamStorage::with_config(MemoryStorageConfig::default().with_clock(clock.shared()))
    }

    fn is_not_found<T: std::fmt::Debug>(result: Result<T, StorageError>) -> bool {
        matches!(result, Err(StorageError::NotFound { .. }))
    }

    #[tokio::test]
    async fn a_ttl_stream_expires_when_the_injected_clock_passes_its_idle_window() {
        let clock = ManualClock::new(1_000_000);
        let store = storage(&clock);
        let name = StreamName::new("ttl").expect("valid");
        let config = StreamConfig {
            expiry: Expiry::Ttl(Duration::from_secs(60)),
            ..StreamConfig::default()
        };
        store.create(&name, config, vec![]).await.expect("create");
        // A read inside the window resets it: 59 s later it is still there, and 59 s after
        // that read too, though 118 s have passed since the create.
        clock.advance(Duration::from_secs(59));
        store
            .read(&name, None, ReadLimits::default())
            .await
            .expect("live");
        clock.advance(Duration::from_secs(59));
        store.head(&name).await.expect("still live");
        // head does not reset it: one more second ends the window.
        clock.advance(Duration::from_secs(1));
        assert!(is_not_found(store.head(&name).await));
        assert_eq!(store.stream_count(), 0, "the expired stream was reaped");
    }

    /// Only the methods every storage must write: `read_joined` is the trait's default. With
    /// `append_after_head`, a record is appended right after each `head` is answered (another
    /// writer's append landing between a caller's `head` and its next call).
    struct DefaultJoin(MemoryStreamStorage, AppendAfterHead);

    #[derive(Clone, Copy, PartialEq)]
    enum AppendAfterHead {
        No,
        Yes,
    }

    #[async_trait]
    impl StreamStorage for DefaultJoin {
        async fn create(
            &self,
            name: &StreamName,
            config: StreamConfig,
            initial: Vec<Bytes>,
        ) -> Result<CreateOutcome, StorageError> {
            self.0.create(name, config, initial).await
        }
        async fn append(
            &self,
            name: &StreamName,
            request: AppendRequest,
        ) -> Result<AppendOutcome, StorageError> {
            self.0.append(name, request).await
        }
        async fn read(
            &self,
            name: &StreamName,
            from: Option<Offset>,
            limits: ReadLimits,
        ) -> Result<ReadBatch, StorageError> {
            self.0.read(name, from, limits).await
        }
        async fn wait(
            &self,
            name: &StreamName,
            after: &Offset,
            timeout: Duration,
        ) -> Result<WaitOutcome, StorageError> {
            self.0.wait(name, after, timeout).await
        }
        async fn head(&self, name: &StreamName) -> Result<StreamInfo, StorageError> {
            let head = self.0.head(name).await;
            if self.1 == AppendAfterHead::Yes {
                self.0
                    .append(name, AppendRequest::record("2"))
                    .await
                    .expect("append after head");
            }
            head
        }
        async fn delete(&self, name: &StreamName) -> Result<(), StorageError> {
            self.0.delete(name).await
        }
        fn capabilities(&self) -> StorageCapabilities {
            self.0.capabilities()
        }
    }

    /// `offset=now` answers from a read at the tail: empty, up to date, at the tail. The
    /// default finds the tail with `head` first; a record appended before its read must not
    /// come back (a client skipping history would take the offset after it and never see it).
    #[tokio::test]
    async fn a_read_from_the_tail_is_empty_even_when_an_append_lands_after_head() {
        let store = MemoryStreamStorage::new();
        let racing = DefaultJoin(store.clone(), AppendAfterHead::Yes);
        let name = StreamName::new("raced").expect("valid");
        let config = StreamConfig::with_content_type("application/json");
        store
            .create(&name, config, vec![Bytes::from("1")])
            .await
            .expect("create");
        let tail_before = store.head(&name).await.expect("head").next_offset;
        let tail = racing
            .read_joined(&name, ReadFrom::Tail, ReadLimits::default(), joining)
            .await
            .expect("read from the tail");
        assert_eq!(&tail.body[..], b"[]");
        assert_eq!(tail.records, 0);
        assert!(tail.up_to_date);
        assert_eq!(tail.next_offset, tail_before, "the tail head answered");
        // The late record is there for the next read from that offset.
        let next = store
            .read(&name, Some(tail.next_offset), ReadLimits::default())
            .await
            .expect("read");
        assert_eq!(next.records.len(), 1);
        assert_eq!(&next.records[0].data[..], b"2".as_slice());
    }

    fn joining(content_type: &str) -> Joining {
        if content_type == "application/json" {
            Joining::JsonArray
        } else {
            Joining::Concat
        }
    }

    /// The storage's own joined read of `name` answers what the default built from `read` does.
    async fn assert_joined_as_default(
        store: &MemoryStreamStorage,
        by_default: &DefaultJoin,
        name: &StreamName,
        from: &ReadFrom,
        limit: ReadLimits,
    ) {
        let ours = store
            .read_joined(name, from.clone(), limit, joining)
            .await
            .expect("joined");
        let default = by_default
            .read_joined(name, from.clone(), limit, joining)
            .await
            .expect("default");
        assert_eq!(ours, default, "{name} from {from:?} {limit:?}");
    }

    #[tokio::test]
    async fn joined_reads_answer_what_the_default_built_from_read_answers() {
        let store = MemoryStreamStorage::new();
        let by_default = DefaultJoin(store.clone(), AppendAfterHead::No);
        let limits = [
            ReadLimits::default(),
            ReadLimits {
                max_records: 2,
                max_bytes: 1 << 20,
            },
            // The first record is always whole; then records while they fit.
            ReadLimits {
                max_records: 100,
                max_bytes: 1,
            },
            ReadLimits {
                max_records: 100,
                max_bytes: 7,
            },
        ];
        for (name, content_type, records) in [
            ("text", "text/plain", vec!["ab", "", "cde", "f", "ghij"]),
            (
                "json",
                "application/json",
                vec!["1", "{\"a\":[2]}", "\"x\"", "[]"],
            ),
            ("empty", "application/json", vec![]),
        ] {
            let name = StreamName::new(name).expect("valid");
            let records: Vec<Bytes> = records.into_iter().map(Bytes::from).collect();
            let config = StreamConfig::with_content_type(content_type);
            store
                .create(&name, config, records.clone())
                .await
                .expect("create");
            let mut offsets = vec![ReadFrom::Start, ReadFrom::Tail];
            let all = store
                .read(&name, None, ReadLimits::default())
                .await
                .expect("read");
            offsets.extend(
                all.records
                    .iter()
                    .map(|r| ReadFrom::After(r.offset.clone())),
            );
            offsets.push(ReadFrom::After(all.next_offset.clone()));
            for closed in [false, true] {
                if closed {
                    let close = AppendRequest::close_only();
                    store.append(&name, close).await.expect("close");
                }
                for from in &offsets {
                    for limit in limits {
                        assert_joined_as_default(&store, &by_default, &name, from, limit).await;
                    }
                }
            }
            // Spot checks of what both agree on.
            let whole = store
                .read_joined(&name, ReadFrom::Start, ReadLimits::default(), joining)
                .await
                .expect("joined");
            assert!(whole.up_to_date && whole.closed);
            assert_eq!(whole.records, records.len());
            let expected = match content_type {
                "text/plain" => "abcdefghij",
                _ if records.is_empty() => "[]",
                _ => "[1,{\"a\":[2]},\"x\",[]]",
            };
            assert_eq!(&whole.body[..], expected.as_bytes(), "{name}");
        }
        // A read larger than what is copied under the lock is joined after it: the same body.
        let large = StreamName::new("large").expect("valid");
        let records: Vec<Bytes> = (0..5u8)
            .map(|i| Bytes::from(vec![b'a' + i; 100 << 10]))
            .collect();
        let config = StreamConfig::with_content_type("application/octet-stream");
        store.create(&large, config, records).await.expect("create");
        let ours = store
            .read_joined(&large, ReadFrom::Start, ReadLimits::default(), joining)
            .await
            .expect("joined");
        let default = by_default
            .read_joined(&large, ReadFrom::Start, ReadLimits::default(), joining)
            .await
            .expect("default");
        assert_eq!(ours.body.len(), 500 << 10);
        assert_eq!(ours, default);
        let missing = StreamName::new("missing").expect("valid");
        let read = store
            .read_joined(&missing, ReadFrom::Tail, ReadLimits::default(), joining)
            .await;
        assert!(is_not_found(read));
    }

    #[tokio::test]
    async fn joined_reads_of_packed_chunks_answer_what_the_default_answers() {
        // Past two chunks of records: the full ones are packed, and a read within one is
        // a slice of it rather than a copy. Records of 1-3 bytes, so every bound shows.
        let store = MemoryStreamStorage::new();
        let by_default = DefaultJoin(store.clone(), AppendAfterHead::No);
        let chunk = super::records::CHUNK;
        let count = 2 * chunk + 10;
        for (name, content_type) in [
            ("bin", "application/octet-stream"),
            ("json", "application/json"),
        ] {
            let name = StreamName::new(name).expect("valid");
            let records: Vec<Bytes> = (0..count)
                .map(|i| Bytes::from((i % 1000).to_string().into_bytes()))
                .collect();
            let config = StreamConfig::with_content_type(content_type);
            store.create(&name, config, records).await.expect("create");
            let all = store
                .read(
                    &name,
                    None,
                    ReadLimits {
                        max_records: count,
                        max_bytes: usize::MAX,
                    },
                )
                .await
                .expect("read");
            assert_eq!(all.records.len(), count);
            for start in [
                0,
                1,
                chunk - 6,
                chunk - 1,
                chunk,
                chunk + 44,
                2 * chunk - 1,
                2 * chunk,
                count - 1,
            ] {
                let from = if start == 0 {
                    ReadFrom::Start
                } else {
                    ReadFrom::After(all.records[start - 1].offset.clone())
                };
                for max_records in [1, 6, chunk / 2, chunk, count] {
                    let limit = ReadLimits {
                        max_records,
                        max_bytes: usize::MAX,
                    };
                    assert_joined_as_default(&store, &by_default, &name, &from, limit).await;
                }
            }
        }
    }

    #[tokio::test]
    async fn an_absolute_expiry_is_judged_by_the_injected_clock_not_the_system_time() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as u64;
        let clock = ManualClock::new(now);
        let store = storage(&clock);
        let name = StreamName::new("at").expect("valid");
        let config = StreamConfig {
            expiry: Expiry::At(UNIX_EPOCH + Duration::from_millis(now + 3_600_000)),
            ..StreamConfig::default()
        };
        store.create(&name, config, vec![]).await.expect("create");
        clock.advance(Duration::from_secs(3_599));
        store.head(&name).await.expect("an hour has not passed");
        clock.advance(Duration::from_secs(1));
        assert!(is_not_found(store.head(&name).await));
    }
}
