//! [`LogStreamStorage`]: an embedded durable [`StreamStorage`] on an append-only journal.
//!
//! The streams live in memory, as in [`MemoryStreamStorage`] (the same rules, the same code);
//! every change is also written to one journal file, `journal.log` in the storage's directory,
//! and a call answers only once the changes it made or saw are on disk (`fdatasync` returned).
//! Changes made while one group is being synced are written and synced together as the next
//! group (group commit). Opening the directory applies the journal again; a torn tail (a group
//! the crash cut short, which no call was answered for) is cut off, while damage before the
//! last frame stops the open with the byte it is at.
//!
//! What an acknowledgement means, by default: the change is in the file and the file's data was
//! synced to the device (`fdatasync`), so it survives a kill -9 of the process, an OS crash and
//! a power loss on a device that honours flushes. With
//! [`fsync_every_group`](LogStorageConfig::fsync_every_group) off, it is in the OS page cache
//! (kill -9 safe; synced at most a second later).
//!
//! The changes of streams that are gone (deleted, expired) stay in the journal until they
//! amount to [`compact_dead_bytes`](LogStorageConfig::compact_dead_bytes) and to at least the
//! bytes of the streams that exist; the writer then rewrites the journal without them (at open
//! too). The file then holds the live data, at most as many dead bytes again (or the
//! threshold), and what was written while the last rewrite ran (copied whole; the next rewrite
//! drops its dead part). The live bytes are copied beside the writer; calls wait only while the
//! last of what was appended during the copy is copied after it and the new file replaces the
//! old.
//!
//! Memory: a stream's records are held in chunks of 256; once the full chunks in memory total
//! more than [`max_resident_bytes`](LogStorageConfig::max_resident_bytes) (default 16 MiB),
//! the oldest are written to spill files beside the journal (`spill-*.dat`, a cache: never
//! synced, removed at the next open) and read from there, so that memory stays bounded
//! whatever the data's size. What stays in memory besides: each stream's growing tail (up to
//! 255 records), a fork's share of its source's chunks, and a few bytes per chunk.
//!
//! Limits, stated so nobody finds them by surprise: opening reads the whole journal (frame by
//! frame, so the time to open grows with it), and only one process may open a directory at a
//! time (`LOCK`). Reads do not reset a TTL across a restart: after
//! opening, every TTL window starts afresh.

mod codec;
mod compaction;
mod frame;
mod recovery;
mod writer;

#[cfg(test)]
mod spill_tests;
#[cfg(test)]
mod tests;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use courier_traits::clock::{Clock, system_clock};
use courier_traits::storage::{
    AppendOutcome, AppendRequest, CreateOutcome, JoinedBatch, JoiningFor, KeyedOutcome,
    KeyedRecord, Offset, ReadBatch, ReadFrom, ReadLimits, StorageCapabilities, StorageError,
    StreamConfig, StreamInfo, StreamName, StreamStorage, WaitOutcome,
};

use crate::memory::{JournalBuffer, MemoryStorageConfig, MemoryStreamStorage, Residency, Spiller};
use writer::Durability;

/// The journal's file name in the storage's directory.
const JOURNAL: &str = "journal.log";
/// How often the journal is synced when calls do not wait for it.
const PERIODIC_SYNC: Duration = Duration::from_secs(1);
/// Where compaction writes the journal's replacement before renaming it over the journal.
const REWRITE: &str = "journal.compact";
/// The file locked while a process has the directory open.
const LOCK: &str = "LOCK";

/// Settings of a [`LogStreamStorage`]: build with [`Default`] and the `with_*` setters.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LogStorageConfig {
    /// Largest single record accepted (default 64 MiB; at most 4 GiB - 1, the journal's
    /// length field: larger settings are lowered to it).
    pub max_record_bytes: usize,
    /// The clock expiry is decided against (default: the system clock).
    pub clock: Arc<dyn Clock>,
    /// How long opening waits for another holder of the directory to let go (default 10 s:
    /// a handle dropped a moment ago whose writer is finishing its last group, or a process
    /// being restarted).
    pub lock_wait: Duration,
    /// Whether a call is answered only once its changes are synced to the device (the
    /// default). `false`: once they are written to the OS (a kill -9 of the process loses
    /// nothing; an OS crash or power loss may lose the last second), with a sync at most every
    /// second, which is the guarantee of NATS JetStream's default file storage (it syncs
    /// every 2 minutes) and of `sqlite:PATH?sync=normal`.
    pub fsync_every_group: bool,
    /// How many bytes of the changes of streams that are gone (deleted, expired) the journal
    /// holds before it is rewritten without them (default 64 MiB), provided they are also at
    /// least as many as the bytes of the streams that exist. The live bytes are copied on a
    /// thread of their own while the journal goes on.
    pub compact_dead_bytes: u64,
    /// How long closing the storage (or dropping its last handle) waits for a running
    /// compaction to finish its copy before abandoning it (default 1 s: a release build
    /// copied 256 MiB of live journal in 0.7-0.9 s in `benches/README.md`, and a far larger
    /// journal does not hold a shutdown). An abandoned compaction starts again at the next
    /// open.
    pub compaction_close_wait: Duration,
    /// How many bytes of full chunks of records stay in memory (default 16 MiB); older ones
    /// are moved to spill files in the directory and read from there (the OS page cache,
    /// mostly). Each stream's newest records (up to 255) always stay in memory, besides this.
    /// `usize::MAX` keeps everything in memory.
    pub max_resident_bytes: usize,
}

impl Default for LogStorageConfig {
    fn default() -> Self {
        LogStorageConfig {
            max_record_bytes: 64 << 20,
            clock: system_clock(),
            lock_wait: Duration::from_secs(10),
            fsync_every_group: true,
            compact_dead_bytes: 64 << 20,
            compaction_close_wait: Duration::from_secs(1),
            max_resident_bytes: 16 << 20,
        }
    }
}

impl LogStorageConfig {
    /// Sets [`max_record_bytes`](Self::max_record_bytes).
    pub fn with_max_record_bytes(mut self, bytes: usize) -> LogStorageConfig {
        self.max_record_bytes = bytes;
        self
    }

    /// Decides expiry against `clock` (a test's manual clock) instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> LogStorageConfig {
        self.clock = clock;
        self
    }

    /// Sets [`fsync_every_group`](Self::fsync_every_group).
    pub fn with_fsync_every_group(mut self, fsync: bool) -> LogStorageConfig {
        self.fsync_every_group = fsync;
        self
    }

    /// Sets [`compact_dead_bytes`](Self::compact_dead_bytes).
    pub fn with_compact_dead_bytes(mut self, bytes: u64) -> LogStorageConfig {
        self.compact_dead_bytes = bytes;
        self
    }

    /// Sets [`compaction_close_wait`](Self::compaction_close_wait).
    pub fn with_compaction_close_wait(mut self, wait: Duration) -> LogStorageConfig {
        self.compaction_close_wait = wait;
        self
    }

    /// Sets [`max_resident_bytes`](Self::max_resident_bytes).
    pub fn with_max_resident_bytes(mut self, bytes: usize) -> LogStorageConfig {
        self.max_resident_bytes = bytes;
        self
    }

    /// Sets [`lock_wait`](Self::lock_wait).
    pub fn with_lock_wait(mut self, wait: Duration) -> LogStorageConfig {
        self.lock_wait = wait;
        self
    }
}

/// Streams in memory, every change journaled to a file and synced before it is answered (see
/// the [module docs](self)). Clones share the same streams and journal.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use courier_impls::log::{LogStorageConfig, LogStreamStorage};
/// use courier_traits::storage::*;
///
/// let dir = std::env::temp_dir().join(format!("courier-log-doc-{}", std::process::id()));
/// let name = StreamName::new("chat")?;
/// {
///     let store = LogStreamStorage::open(&dir, LogStorageConfig::default()).await?;
///     store.create(&name, StreamConfig::with_content_type("text/plain"), vec![]).await?;
///     store.append(&name, AppendRequest::record("hi")).await?;
///     store.close().await;
/// }
/// let store = LogStreamStorage::open(&dir, LogStorageConfig::default()).await?;
/// let batch = store.read(&name, None, ReadLimits::default()).await?;
/// assert_eq!(&batch.records[0].data[..], b"hi");
/// # drop(store); std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LogStreamStorage {
    inner: Arc<Inner>,
}

struct Inner {
    memory: MemoryStreamStorage,
    durability: Arc<Durability>,
    /// Wakes the writer; when the last handle drops it, the writer finishes and stops.
    kick: SyncSender<()>,
    /// The writer thread, joined by [`LogStreamStorage::close`] on the last handle.
    writer: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    max_record_bytes: usize,
    dir: PathBuf,
    /// The full chunks still in memory (read by tests).
    #[cfg_attr(not(test), allow(dead_code))]
    residency: Arc<Residency>,
}

impl LogStreamStorage {
    /// Opens (creating it if needed) the storage in directory `dir`, applying its journal.
    ///
    /// Errors: the directory cannot be created or locked (another process has it open),
    /// the journal cannot be read, or it is damaged before its last frame (the message names
    /// the byte; the file is left as it is).
    pub async fn open(
        dir: impl AsRef<Path>,
        config: LogStorageConfig,
    ) -> Result<LogStreamStorage, StorageError> {
        let dir = dir.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || open_blocking(dir, config))
            .await
            .map_err(|e| StorageError::backend(false, "opening the log storage", Some(e.into())))?
    }

    /// The storage's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Waits until everything answered so far is on disk and, if this is the last handle,
    /// until the writer has stopped and released the directory: after its last write and
    /// sync, and, while a compaction runs, up to
    /// [`compaction_close_wait`](LogStorageConfig::compaction_close_wait) for it. Dropping
    /// the last handle does the same, blocking the thread it is dropped on meanwhile.
    pub async fn close(self) {
        let _ = self.inner.durability.settle(&self.inner.kick).await;
        if let Some(inner) = Arc::into_inner(self.inner) {
            let writer = inner.writer.lock().ok().and_then(|mut w| w.take());
            inner.durability.stop(&inner.kick);
            drop(inner);
            if let Some(writer) = writer {
                let _ = tokio::task::spawn_blocking(move || writer.join()).await;
            }
        }
    }

    /// Answers `result` once every change published so far is on disk.
    async fn settled<T>(&self, result: Result<T, StorageError>) -> Result<T, StorageError> {
        self.inner.durability.settle(&self.inner.kick).await?;
        result
    }
}

impl Drop for Inner {
    /// The last handle gone: the writer writes and syncs what is left and releases the
    /// directory before this returns, so a process that exits right after it loses nothing,
    /// even with periodic syncs (see [`LogStreamStorage::close`] for how long it may take).
    fn drop(&mut self) {
        self.durability.stop(&self.kick);
        let writer = self.writer.get_mut().ok().and_then(Option::take);
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }
}

fn open_blocking(dir: PathBuf, config: LogStorageConfig) -> Result<LogStreamStorage, StorageError> {
    let io =
        |what: String| move |e: std::io::Error| StorageError::backend(false, what, Some(e.into()));
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let lock = lock_directory(&dir, config.lock_wait)?;
    let path = dir.join(JOURNAL);
    let existed = path.exists();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io(format!("opening {}", path.display())))?;
    if !existed {
        // The new file's directory entry is durable before anything is acknowledged in it.
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io(format!("syncing {}", dir.display())))?;
    }
    let rewrite_path = dir.join(REWRITE);
    match std::fs::remove_file(&rewrite_path) {
        // A compaction the process did not finish: the journal it was to replace is whole.
        Ok(()) => {
            tracing::warn!(file = %rewrite_path.display(), "log storage: removed an unfinished compaction")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(format!("removing {}", rewrite_path.display()))(e)),
    }
    // The journal writes a record's length in 32 bits.
    let max_record_bytes = config.max_record_bytes.min(u32::MAX as usize);
    let memory = MemoryStreamStorage::for_replay(
        MemoryStorageConfig::default()
            .with_max_record_bytes(max_record_bytes)
            .with_clock(config.clock.clone()),
    );
    // Spill files are a cache of the journal: the last open's are removed, and the replay
    // spills anew, so that opening holds no more in memory than running does.
    let mut spiller =
        Spiller::new(&dir).map_err(io(format!("removing old spill files in {}", dir.display())))?;
    let residency = Arc::new(Residency::new(config.max_resident_bytes));
    // No budget, no queue: it would only grow.
    if config.max_resident_bytes < usize::MAX {
        memory.spill_into(residency.clone());
    }
    let started = Instant::now();
    let mut liveness = compaction::Liveness::new(config.compact_dead_bytes);
    let recovered = recovery::replay(&path, &memory, &mut liveness, &mut spiller)?;
    memory.spill_over_budget(&mut spiller);
    if recovered.torn > 0 {
        tracing::warn!(
            journal = %path.display(),
            at = recovered.end,
            bytes = recovered.torn,
            "log storage: cutting off a torn tail (a write the crash cut short; nothing in it was acknowledged)"
        );
        file.set_len(recovered.end)
            .and_then(|()| file.sync_all())
            .map_err(io(format!("truncating {}", path.display())))?;
    }
    let end = writer::FileEnd {
        position: recovered.end,
        allocated: recovered.end + recovered.preallocated,
        synced_at: Instant::now(),
        unsynced: false,
        dropped: 0,
    };
    let sync = if config.fsync_every_group {
        writer::Sync::EveryGroup
    } else {
        writer::Sync::Periodic(PERIODIC_SYNC)
    };
    tracing::info!(
        journal = %path.display(),
        bytes = recovered.end,
        operations = recovered.operations,
        millis = started.elapsed().as_millis() as u64,
        "log storage: journal applied"
    );
    let durability = Arc::new(Durability::new(recovered.end));
    memory.attach_journal(JournalBuffer::new(
        recovered.end,
        durability.published.clone(),
        codec::encode_frame,
    ));
    // One pending wake-up is enough: the writer takes everything journaled when it runs.
    let (kick, kicks) = sync_channel(1);
    let writer = std::thread::Builder::new()
        .name("courier-log-writer".into())
        .spawn({
            let (memory, durability) = (memory.clone(), durability.clone());
            let journal = writer::Journal {
                file,
                end,
                path,
                rewrite_path,
                liveness,
                compaction: None,
                close_wait: config.compaction_close_wait,
                spiller,
            };
            move || writer::run(memory, journal, sync, durability, kicks, lock)
        })
        .map_err(io("starting the log writer thread".into()))?;
    Ok(LogStreamStorage {
        inner: Arc::new(Inner {
            memory,
            durability,
            kick,
            writer: std::sync::Mutex::new(Some(writer)),
            max_record_bytes,
            dir,
            residency,
        }),
    })
}

/// Locks `dir/LOCK`, waiting up to `wait` for another holder to let go.
fn lock_directory(dir: &Path, wait: Duration) -> Result<File, StorageError> {
    let path = dir.join(LOCK);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| {
            StorageError::backend(false, format!("opening {}", path.display()), Some(e.into()))
        })?;
    let deadline = Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StorageError::backend(
                    false,
                    format!(
                        "the log directory {} is in use by another process (its LOCK file is locked)",
                        dir.display()
                    ),
                    None,
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StorageError::backend(
                    false,
                    format!("locking {}", path.display()),
                    Some(e.into()),
                ));
            }
        }
    }
}

#[async_trait]
impl StreamStorage for LogStreamStorage {
    async fn create(
        &self,
        name: &StreamName,
        config: StreamConfig,
        initial: Vec<Bytes>,
    ) -> Result<CreateOutcome, StorageError> {
        let result = self.inner.memory.create(name, config, initial).await;
        self.settled(result).await
    }

    async fn append(
        &self,
        name: &StreamName,
        request: AppendRequest,
    ) -> Result<AppendOutcome, StorageError> {
        let result = self.inner.memory.append(name, request).await;
        self.settled(result).await
    }

    async fn append_keyed(
        &self,
        stream: &StreamName,
        records: Vec<KeyedRecord>,
        window: Duration,
    ) -> Result<Vec<KeyedOutcome>, StorageError> {
        let result = self
            .inner
            .memory
            .append_keyed(stream, records, window)
            .await;
        self.settled(result).await
    }

    async fn read(
        &self,
        name: &StreamName,
        from: Option<Offset>,
        limits: ReadLimits,
    ) -> Result<ReadBatch, StorageError> {
        let result = self.inner.memory.read(name, from, limits).await;
        self.settled(result).await
    }

    async fn read_joined(
        &self,
        name: &StreamName,
        from: ReadFrom,
        limits: ReadLimits,
        join: JoiningFor,
    ) -> Result<JoinedBatch, StorageError> {
        let result = self
            .inner
            .memory
            .read_joined(name, from, limits, join)
            .await;
        self.settled(result).await
    }

    async fn wait(
        &self,
        name: &StreamName,
        after: &Offset,
        timeout: Duration,
    ) -> Result<WaitOutcome, StorageError> {
        let result = self.inner.memory.wait(name, after, timeout).await;
        self.settled(result).await
    }

    async fn head(&self, name: &StreamName) -> Result<StreamInfo, StorageError> {
        let result = self.inner.memory.head(name).await;
        self.settled(result).await
    }

    async fn delete(&self, name: &StreamName) -> Result<(), StorageError> {
        let result = self.inner.memory.delete(name).await;
        self.settled(result).await
    }

    fn capabilities(&self) -> StorageCapabilities {
        StorageCapabilities {
            durable: true,
            ttl: true,
            producers: true,
            forks: true,
            keyed_append: true,
            max_record_bytes: Some(self.inner.max_record_bytes),
            ..StorageCapabilities::NONE
        }
    }
}
