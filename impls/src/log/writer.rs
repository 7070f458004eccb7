//! The journal's writer: one thread that takes what the storage journaled, writes it at the
//! end of the file with one `write` and one `fdatasync` per group, and tells the waiting calls.
//!
//! Group commit comes from the thread's pace: while one group is being synced, the calls made
//! meanwhile pile up in the storage's journal buffer and go out together in the next group.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use courier_traits::storage::{StorageError, StreamName};
use tokio::sync::Notify;

use super::compaction::{self, Liveness, Rewritten};
use crate::memory::{MemoryStreamStorage, Spiller, Taken};

/// What the calls and the writer share.
pub(super) struct Durability {
    /// The journal position after the last finished call's changes (see
    /// [`crate::memory::JournalBuffer::publish`]).
    pub(super) published: Arc<AtomicU64>,
    /// Everything before this position is in the file and `fdatasync` returned.
    durable: AtomicU64,
    /// Why the journal can no longer be written, once that happened.
    failed: OnceLock<String>,
    /// Woken after every group.
    synced: Notify,
    /// Set when the last handle is dropped: the writer finishes and stops at its next wake-up.
    stop: AtomicBool,
    /// How many syncs of the journal the writer made after a group, when idle or when stopping
    /// (read by tests: a sync leaves no other trace).
    syncs: AtomicU64,
}

impl Durability {
    /// A journal whose first `position` bytes are on disk already.
    pub(super) fn new(position: u64) -> Durability {
        Durability {
            published: Arc::new(AtomicU64::new(position)),
            durable: AtomicU64::new(position),
            failed: OnceLock::new(),
            synced: Notify::new(),
            stop: AtomicBool::new(false),
            syncs: AtomicU64::new(0),
        }
    }

    /// Waits until every change published so far is on disk, waking the writer if it must.
    /// A call answers only after this: nothing it did or saw can be lost to a crash after its
    /// answer (what it saw may include other calls' changes that were not yet synced).
    pub(super) async fn settle(&self, kick: &SyncSender<()>) -> Result<(), StorageError> {
        let target = self.published.load(Ordering::Acquire);
        if self.durable.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        match kick.try_send(()) {
            // Full: a wake-up is pending already, which covers this call too.
            Ok(()) | Err(TrySendError::Full(())) => {}
            Err(TrySendError::Disconnected(())) => return Err(self.stopped()),
        }
        loop {
            let synced = self.synced.notified();
            tokio::pin!(synced);
            synced.as_mut().enable();
            if self.durable.load(Ordering::Acquire) >= target {
                return Ok(());
            }
            if self.failed.get().is_some() {
                return Err(self.stopped());
            }
            synced.await;
        }
    }

    fn stopped(&self) -> StorageError {
        let why = self
            .failed
            .get()
            .map_or("the writer stopped", String::as_str);
        StorageError::backend(
            false,
            format!("the log storage's journal cannot be written ({why}); open the storage again"),
            None,
        )
    }

    /// Asks the writer to finish and stop, waking it with `kick`.
    pub(super) fn stop(&self, kick: &SyncSender<()>) {
        self.stop.store(true, Ordering::Release);
        // Full: a wake-up is pending already, and the writer sees the flag on it.
        let _ = kick.try_send(());
    }

    /// How many times the journal file was synced so far.
    #[cfg(test)]
    pub(super) fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Acquire)
    }

    fn count_sync(&self) {
        self.syncs.fetch_add(1, Ordering::Release);
    }

    fn synced_to(&self, position: u64) {
        self.durable.store(position, Ordering::Release);
        self.synced.notify_waiters();
    }

    fn fail(&self, why: String) {
        tracing::error!(error = %why, "log storage: the journal cannot be written; every call fails from now on");
        let _ = self.failed.set(why);
        self.synced.notify_waiters();
    }
}

/// The largest buffer kept for the next group.
const SPARE_CAPACITY: usize = 8 << 20;

/// How far ahead of the last group the file is filled with zeros. A sync of data written over
/// zeros already on disk is a data flush only; one that grows the file also commits the file
/// system's journal for the new size and blocks (measured on an ext4 VM with `dd
/// oflag=dsync`, 2 000 writes of 200 bytes: 346-405 µs per write appending in three runs,
/// 200-302 µs over zeros in five).
const PREALLOCATE: u64 = 4 << 20;

/// The end of the journal file: where the next group goes, and how far zeros reach.
pub(super) struct FileEnd {
    /// Where the next group is written (after the last whole frame).
    pub(super) position: u64,
    /// The file's length: zeros from `position` to here.
    pub(super) allocated: u64,
    /// When the file was last synced (for [`Sync::Periodic`]).
    pub(super) synced_at: Instant,
    /// Whether groups were written since (for [`Sync::Periodic`]).
    pub(super) unsynced: bool,
    /// Bytes compaction dropped from the file so far: a journal position is `position +
    /// dropped`.
    pub(super) dropped: u64,
}

/// Writes `group` at `end.position`, first filling the file with zeros ahead of it when it
/// would pass `end.allocated` (in the same sync as the group); answers whether it synced.
fn write_group(
    file: &mut File,
    end: &mut FileEnd,
    group: &[u8],
    sync: Sync,
) -> std::io::Result<bool> {
    let needed = end.position + group.len() as u64;
    if needed > end.allocated {
        let grow_to = needed.div_ceil(PREALLOCATE) * PREALLOCATE + PREALLOCATE;
        static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        let mut at = end.allocated;
        while at < grow_to {
            let n = (grow_to - at).min(ZEROS.len() as u64) as usize;
            write_at(file, &ZEROS[..n], at)?;
            at += n as u64;
        }
        end.allocated = grow_to;
    }
    write_at(file, group, end.position)?;
    let synced = match sync {
        Sync::EveryGroup => {
            file.sync_data()?;
            true
        }
        Sync::Periodic(every) => {
            end.unsynced = true;
            let due = end.synced_at.elapsed() >= every;
            if due {
                file.sync_data()?;
                end.synced_at = Instant::now();
                end.unsynced = false;
            }
            due
        }
    };
    end.position = needed;
    Ok(synced)
}

/// Writes `bytes` at `position`: on Unix one positioned write per call (`pwrite`), not a seek
/// and a write, one system call less per group.
#[cfg(unix)]
fn write_at(file: &mut File, bytes: &[u8], position: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, position)
}

/// Writes `bytes` at `position` (a seek, then a write, where positioned writes differ).
#[cfg(not(unix))]
fn write_at(file: &mut File, bytes: &[u8], position: u64) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    file.seek(SeekFrom::Start(position))?;
    file.write_all(bytes)
}

/// When the journal is synced to the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sync {
    /// After every group, before its calls are answered.
    EveryGroup,
    /// At most this often, after a group's write; calls are answered once their group is in
    /// the OS page cache (a kill -9 loses nothing, an OS crash or power loss may lose what
    /// was written since the last sync).
    Periodic(Duration),
}

/// The journal file and what is known of it.
pub(super) struct Journal {
    pub(super) file: File,
    pub(super) end: FileEnd,
    /// The journal's path (`dir/journal.log`).
    pub(super) path: PathBuf,
    /// Where compaction writes the new file before renaming it over the journal.
    pub(super) rewrite_path: PathBuf,
    pub(super) liveness: Liveness,
    /// The compaction running beside the writer, if one is.
    pub(super) compaction: Option<Compaction>,
    /// How long a stop waits for a running compaction's copy before abandoning it.
    pub(super) close_wait: Duration,
    /// Where full chunks over the memory budget go.
    pub(super) spiller: Spiller,
}

/// A rewrite of the journal running on a thread of its own.
pub(super) struct Compaction {
    started: Instant,
    thread: std::thread::JoinHandle<std::io::Result<Rewritten>>,
    /// Set to stop the copy between two frames (the storage is closing).
    cancelled: Arc<AtomicBool>,
}

/// How often a writer with nothing to write looks whether the compaction finished.
const COMPACTION_POLL: Duration = Duration::from_millis(5);

/// Waits at most `limit` for the running compaction's copy (if any) to finish; answers
/// whether one is still copying.
fn wait_for_compaction(journal: &Journal, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let copying = journal
            .compaction
            .as_ref()
            .is_some_and(|c| !c.thread.is_finished());
        if !copying || Instant::now() >= deadline {
            return copying;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Syncs the journal outside a group (`what`, for the error); answers false once that failed,
/// which fails the storage and leaves no compaction running.
fn sync_journal(journal: &mut Journal, durability: &Durability, what: &str) -> bool {
    if let Err(e) = journal.file.sync_data() {
        durability.fail(format!("{what}: {e}"));
        abandon_compaction(journal);
        return false;
    }
    durability.count_sync();
    journal.end.synced_at = Instant::now();
    journal.end.unsynced = false;
    true
}

/// Stops the running compaction, if any, without using what it made: cancels its copy,
/// waits for its thread and removes its file (before the caller releases the directory).
fn abandon_compaction(journal: &mut Journal) {
    let Some(running) = journal.compaction.take() else {
        return;
    };
    running.cancelled.store(true, Ordering::Relaxed);
    let outcome = running.thread.join();
    let _ = std::fs::remove_file(&journal.rewrite_path);
    let after_millis = running.started.elapsed().as_millis() as u64;
    let path = journal.path.display();
    match outcome {
        Err(_) => {
            tracing::warn!(journal = %path, "log storage: the compaction thread panicked")
        }
        Ok(Err(e)) if !compaction::is_cancelled(&e) => {
            tracing::warn!(journal = %path, error = %e, "log storage: compaction failed")
        }
        Ok(_) => tracing::info!(
            journal = %path,
            after_millis,
            "log storage: compaction abandoned, the storage is closing (it starts again at the next open)"
        ),
    }
}

/// Runs until asked to [stop](Durability::stop) or every sender of `kicks` is gone, then
/// writes what is left and returns, releasing `lock` (the directory's lock file) last. Should
/// it panic (a bug), every waiting and later call fails instead of waiting forever.
pub(super) fn run(
    memory: MemoryStreamStorage,
    journal: Journal,
    sync: Sync,
    durability: Arc<Durability>,
    kicks: Receiver<()>,
    lock: File,
) {
    let failed = durability.clone();
    let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        write_until_stopped(memory, journal, sync, durability, kicks, lock);
    }));
    if written.is_err() {
        failed.fail("the writer thread panicked".into());
    }
}

fn write_until_stopped(
    memory: MemoryStreamStorage,
    mut journal: Journal,
    sync: Sync,
    durability: Arc<Durability>,
    kicks: Receiver<()>,
    lock: File,
) {
    let mut spare = Vec::new();
    // The first round runs before any wake-up: a journal opened with enough dead bytes in it
    // is compacted at once.
    let mut stopping = false;
    // Whether the stop has waited for a running compaction already (it waits once).
    let mut waited = false;
    loop {
        // Until a take finds nothing: what was journaled during a sync is the next group.
        loop {
            // A finished compaction is completed with the streams that exist at the end of the
            // journal.
            let finishing = journal
                .compaction
                .as_ref()
                .is_some_and(|c| c.thread.is_finished());
            // None starts once stopping: the stop would wait for it, then cancel it.
            let check =
                finishing || (!stopping && journal.compaction.is_none() && journal.liveness.due());
            let Some(Taken {
                bytes: group,
                end: group_end,
                streams,
            }) = memory.take_journal(std::mem::take(&mut spare), check)
            else {
                break;
            };
            let wrote = !group.is_empty();
            if wrote {
                let at = journal.end.position;
                match write_group(&mut journal.file, &mut journal.end, &group, sync) {
                    Ok(synced) => {
                        if synced {
                            durability.count_sync();
                        }
                    }
                    Err(e) => {
                        durability.fail(format!("writing {} bytes: {e}", group.len()));
                        abandon_compaction(&mut journal);
                        return;
                    }
                }
                debug_assert_eq!(
                    journal.end.position + journal.end.dropped,
                    group_end,
                    "the file and the journal agree"
                );
                journal.liveness.group(&group, at);
                durability.synced_to(group_end);
                // The group's calls are answered; what they sealed is spilled now if the
                // resident chunks are over budget.
                memory.spill_over_budget(&mut journal.spiller);
            }
            if let Some(streams) = streams {
                if finishing {
                    if let Err(why) = finish_compaction(&mut journal, &streams) {
                        // Nothing left running: it failed after the rename.
                        durability.fail(why);
                        return;
                    }
                } else if journal.liveness.worth_rewriting(&streams) {
                    start_compaction(&mut journal);
                }
            }
            // One huge group (a create with megabytes of records) is not kept as the buffer.
            spare = if group.capacity() <= SPARE_CAPACITY {
                group
            } else {
                Vec::new()
            };
            if !wrote {
                break;
            }
        }
        if stopping {
            // What periodic syncing left unsynced goes to the device first (a clean stop loses
            // nothing even to a power loss right after it), not after the wait below.
            if !sync_journal(&mut journal, &durability, "the last sync") {
                return;
            }
            if !waited && journal.compaction.is_some() {
                waited = true;
                // A copy that ends within the wait is completed by the next pass: a storage
                // opened and closed at once, or closed right after large deletes, still
                // shrinks. A longer one is abandoned, so that the copy of a large journal
                // does not hold a shutdown; the journal is whole without it.
                if !wait_for_compaction(&journal, journal.close_wait) {
                    continue;
                }
            }
            // Its file is removed before the directory's lock is released.
            abandon_compaction(&mut journal);
            drop(lock);
            return;
        }
        // Woken by a call, by a compaction to finish, or by a periodic sync that is due.
        let sync_due = match sync {
            Sync::Periodic(every) if journal.end.unsynced => {
                Some(every.saturating_sub(journal.end.synced_at.elapsed()))
            }
            _ => None,
        };
        let wait = match (journal.compaction.is_some(), sync_due) {
            (true, Some(due)) => Some(due.min(COMPACTION_POLL)),
            (true, None) => Some(COMPACTION_POLL),
            (false, due) => due,
        };
        let woken = match wait {
            Some(wait) => match kicks.recv_timeout(wait) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => true,
                Err(RecvTimeoutError::Disconnected) => false,
            },
            None => kicks.recv().is_ok(),
        };
        if let Sync::Periodic(every) = sync
            && journal.end.unsynced
            && journal.end.synced_at.elapsed() >= every
        {
            // Idle after a group the periodic sync skipped: it goes to the device now, not at
            // the next group (which may never come).
            if !sync_journal(&mut journal, &durability, "a periodic sync") {
                return;
            }
        }
        stopping = !woken || durability.stop.load(Ordering::Acquire);
    }
}

/// Starts rewriting the journal without the frames of streams that are gone (see
/// [`super::compaction`]) on a thread of its own; the writer goes on meanwhile.
fn start_compaction(journal: &mut Journal) {
    let plan = journal.liveness.plan();
    let from = plan.end;
    let (path, tmp) = (journal.path.clone(), journal.rewrite_path.clone());
    let cancelled = Arc::new(AtomicBool::new(false));
    let spawned = std::thread::Builder::new()
        .name("courier-log-compaction".into())
        .spawn({
            let cancelled = cancelled.clone();
            move || compaction::rewrite(plan, &path, &tmp, &cancelled)
        });
    match spawned {
        Ok(thread) => {
            journal.compaction = Some(Compaction {
                started: Instant::now(),
                thread,
                cancelled,
            });
        }
        Err(e) => {
            tracing::warn!(error = %e, "log storage: cannot start a compaction thread");
            journal.liveness.postpone(from);
        }
    }
}

/// Waits for the running compaction (if any), copies what the writer appended meanwhile to
/// the new file (`existing`: the streams that exist at the journal's end) and puts it in the
/// journal's place. A failure before the new file replaces
/// the old one is logged and leaves the old one in use; `Err` (the journal can no longer be
/// written safely) only when the rename happened and the directory could not be synced.
fn finish_compaction(journal: &mut Journal, existing: &[StreamName]) -> Result<(), String> {
    let Some(Compaction {
        started, thread, ..
    }) = journal.compaction.take()
    else {
        return Ok(());
    };
    let before = journal.end.position;
    let copied_at = Instant::now();
    let rewritten = thread
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the compaction thread panicked")))
        .and_then(|mut rewritten| {
            rewritten.append_tail(&journal.path, before, &journal.liveness, existing)?;
            Ok(rewritten)
        });
    let keep_old = |journal: &mut Journal, what: &str, e: &dyn std::fmt::Display| {
        tracing::warn!(error = %e, journal = %journal.path.display(), "log storage: compaction {what}; the journal is kept as it is");
        let _ = std::fs::remove_file(&journal.rewrite_path);
        journal.liveness.postpone(before);
    };
    let mut rewritten = match rewritten {
        Ok(rewritten) => rewritten,
        Err(e) => {
            keep_old(journal, "failed", &e);
            return Ok(());
        }
    };
    if let Err(e) = std::fs::rename(&journal.rewrite_path, &journal.path) {
        keep_old(journal, "could not replace the journal", &e);
        return Ok(());
    }
    // From here the old file is unlinked: going on in it would write where no open reads.
    if let Some(dir) = journal.path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("syncing {} after compaction: {e}", dir.display()))?;
    }
    journal.liveness.adopt(&mut rewritten);
    journal.file = rewritten.file;
    journal.end.dropped += before - rewritten.len;
    journal.end.position = rewritten.len;
    journal.end.allocated = rewritten.len;
    journal.end.synced_at = Instant::now();
    journal.end.unsynced = false;
    tracing::info!(
        journal = %journal.path.display(),
        before,
        after = rewritten.len,
        millis = started.elapsed().as_millis() as u64,
        writer_paused_millis = copied_at.elapsed().as_millis() as u64,
        "log storage: journal compacted (the changes of streams that are gone dropped)"
    );
    Ok(())
}
