//! Group commit: one OS thread owns the write connection and commits every write queued
//! meanwhile in one transaction, so one fsync covers many appends.
//!
//! Appends are applied together per stream (`batch_append.rs`). Other jobs run inside their own
//! `SAVEPOINT`: a job that fails is rolled back alone and the others still commit. A caller
//! hears back only after the commit (or its failure), so an acknowledged append is durable.
//!
//! The connection lives on a thread of its own, not on the async runtime: SQLite calls block
//! (the fsync of a commit takes milliseconds), and one hand-off per batch is all a write costs.
//!
//! After each commit the writer brings the recent-records cache up to date and tells it at
//! which reading of the file's commit state (the wal-index header, else `PRAGMA
//! data_version`) it is exact (`recent.rs`).
//!
//! A lone append (nothing queued nor being committed) commits on its caller's thread instead,
//! when commits do not fsync: the hop to the writer thread and back woke two sleeping threads
//! per message, about a fifth of the broker's CPU per reliable message with one producer
//! (benches/README.md). It never waits for another process's write lock (it queues instead)
//! nor checkpoints the WAL (`checkpoint.rs` says who does), and the connection's lock
//! keeps it from overlapping a batch, so nothing else changes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use courier_traits::clock::Clock;
use courier_traits::storage::{AppendOutcome, AppendRequest, StorageError, StreamName};
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::batch_append::{self, QueuedAppend};
use super::checkpoint::{self, Checkpointer, Due};
use super::errors::{db_error, storage_closed};
use super::recent::{Change, Recent, data_version};
use crate::sql_model::now_ms;

/// Most jobs committed together.
const MAX_BATCH: usize = 256;

/// The work of one write, run on the writer's connection inside the batch transaction.
pub(super) trait Work<T>:
    FnOnce(&Connection) -> Result<T, StorageError> + Send + 'static
{
}
impl<T, W> Work<T> for W where W: FnOnce(&Connection) -> Result<T, StorageError> + Send + 'static {}

trait Job: Send {
    fn run(&mut self, conn: &Connection);
    fn finish(self: Box<Self>, commit: Result<(), String>);
}

struct TypedJob<T, W> {
    work: Option<W>,
    result: Option<Result<T, StorageError>>,
    reply: oneshot::Sender<Result<T, StorageError>>,
}

/// Runs `sql` (a statement without parameters) through the statement cache.
pub(super) fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

impl<T: Send + 'static, W: Work<T>> Job for TypedJob<T, W> {
    fn run(&mut self, conn: &Connection) {
        let Some(work) = self.work.take() else { return };
        if let Err(e) = exec(conn, "SAVEPOINT job") {
            self.result = Some(Err(db_error(e)));
            return;
        }
        let result = work(conn);
        let closed = if result.is_err() {
            exec(conn, "ROLLBACK TO job").and_then(|()| exec(conn, "RELEASE job"))
        } else {
            exec(conn, "RELEASE job")
        };
        self.result = Some(match (result, closed) {
            (Ok(_), Err(e)) => Err(db_error(e)),
            (result, _) => result,
        });
    }

    fn finish(self: Box<Self>, commit: Result<(), String>) {
        let _ = self.reply.send(settle(self.result, commit));
    }
}

/// A write's answer: its own error, else its value if the batch committed.
fn settle<T>(
    result: Option<Result<T, StorageError>>,
    commit: Result<(), String>,
) -> Result<T, StorageError> {
    match (result, commit) {
        (Some(Err(e)), _) => Err(e),
        (Some(Ok(value)), Ok(())) => Ok(value),
        (_, Err(message)) => Err(StorageError::Unavailable {
            message,
            source: None,
        }),
        (None, Ok(())) => Err(StorageError::Backend {
            message: "write was not applied".into(),
            source: None,
        }),
    }
}

/// What the writer is asked to do.
// Appends are nearly all of the queue, so boxing the large variant would add an allocation per
// append to save space only on the rare other jobs.
#[allow(clippy::large_enum_variant)]
enum Queued {
    /// Any write, run in its own savepoint, and what the cache must forget once it commits.
    Job(Box<dyn Job>, Change),
    /// An append, applied together with the batch's other appends.
    Append(
        QueuedAppend,
        oneshot::Sender<Result<AppendOutcome, StorageError>>,
    ),
    /// Commit what came before, then end the thread (`close`).
    Stop,
    /// Checkpoint the WAL after this batch: an inline append's commit found it past the mark
    /// where the writer thread does (`checkpoint.rs`).
    Checkpoint,
}

impl Queued {
    fn finish(self, commit: Result<(), String>) {
        match self {
            Queued::Job(job, _) => job.finish(commit),
            Queued::Append(append, reply) => {
                let _ = reply.send(settle(append.result, commit));
            }
            Queued::Stop | Queued::Checkpoint => {}
        }
    }
}

/// The handle to the writer thread, shared by the storage's clones.
#[derive(Clone)]
pub(super) struct Writer {
    owner: Arc<Owner>,
}

/// Owns the writer thread: when the last handle goes, the queue closes and the thread is
/// joined once it has committed what was queued.
struct Owner {
    /// `None` only while dropping.
    jobs: Option<mpsc::Sender<Queued>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The write connection, shared by the thread and lone appends (`Writer::append`).
    conn: Arc<Mutex<WriteConn>>,
    /// Writes sent to the thread and not yet answered: a lone append commits inline only at 0,
    /// so it is never committed before an append queued ahead of it.
    pending: Arc<AtomicUsize>,
    /// Whether lone appends may commit on their caller's thread (commits do not fsync).
    inline: bool,
    clock: Arc<dyn Clock>,
    recent: Arc<Recent>,
    /// The connection's busy timeout, restored after an inline append's `BEGIN`.
    busy_timeout: Duration,
    /// Checkpoints concurrently with the commits (`checkpoint.rs`).
    checkpointer: Arc<Checkpointer>,
}

/// The write connection and what the writer knows about it between batches.
struct WriteConn {
    conn: Connection,
    /// This connection's `data_version` after the last batch: it moves only when another
    /// connection commits, which the cache cannot follow.
    others: Option<i64>,
    /// Set once the thread has stopped: later writes fail as closed.
    stopped: bool,
}

/// Counts a write as pending from before it is queued; uncounts it if it never was (the
/// caller's future dropped while waiting for room, or the queue closed).
struct Pending<'a> {
    count: &'a AtomicUsize,
    queued: bool,
}

impl<'a> Pending<'a> {
    fn new(count: &'a AtomicUsize) -> Pending<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        Pending {
            count,
            queued: false,
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.queued {
            self.count.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.jobs = None;
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

impl Writer {
    /// Starts the writer thread on `conn` and the checkpoint thread on `checkpoints` (another
    /// connection to the same database); appends judge expiry against `clock`; commits are
    /// applied to `recent`.
    /// `inline`: lone appends may commit on their caller's thread (only when commits do not
    /// fsync: a caller must not block for a disk flush); `busy_timeout` is the connection's.
    pub(super) fn start(
        conn: Connection,
        checkpoints: Connection,
        clock: Arc<dyn Clock>,
        recent: Arc<Recent>,
        inline: bool,
        busy_timeout: Duration,
    ) -> std::io::Result<Writer> {
        let (jobs, queue) = mpsc::channel(4 * MAX_BATCH);
        checkpoint::install(&conn);
        let conn = Arc::new(Mutex::new(WriteConn {
            conn,
            others: None,
            stopped: false,
        }));
        let pending = Arc::new(AtomicUsize::new(0));
        let checkpointer = Arc::new(Checkpointer::start(checkpoints)?);
        let thread = {
            let (conn, pending, clock, recent, checkpointer) = (
                conn.clone(),
                pending.clone(),
                clock.clone(),
                recent.clone(),
                checkpointer.clone(),
            );
            std::thread::Builder::new()
                .name("courier-sqlite-writer".into())
                .spawn(move || {
                    run(&conn, queue, &pending, &*clock, &recent, &checkpointer);
                    // Nothing commits any more: nothing is left to checkpoint concurrently.
                    checkpointer.stop();
                })?
        };
        Ok(Writer {
            owner: Arc::new(Owner {
                jobs: Some(jobs),
                thread: Mutex::new(Some(thread)),
                conn,
                pending,
                inline,
                clock,
                recent,
                busy_timeout,
                checkpointer,
            }),
        })
    }

    async fn send(&self, queued: Queued) -> Result<(), StorageError> {
        let jobs = self.owner.jobs.as_ref().ok_or_else(storage_closed)?;
        let mut pending = Pending::new(&self.owner.pending);
        jobs.send(queued).await.map_err(|_| storage_closed())?;
        pending.queued = true;
        Ok(())
    }

    /// Runs `work` in the next batch; returns its result once the batch has committed.
    /// `touches` is what the cache forgets once it commits: [`Change::Forget`] of the one
    /// stream `work` may change, or [`Change::ForgetAll`].
    pub(super) async fn write<T: Send + 'static>(
        &self,
        touches: Change,
        work: impl Work<T>,
    ) -> Result<T, StorageError> {
        let (reply, result) = oneshot::channel();
        let job = Box::new(TypedJob {
            work: Some(work),
            result: None,
            reply,
        });
        self.send(Queued::Job(job, touches)).await?;
        result.await.map_err(|_| storage_closed())?
    }

    /// Appends in the next batch; returns the outcome once that batch is committed.
    pub(super) async fn append(
        &self,
        name: StreamName,
        request: AppendRequest,
    ) -> Result<AppendOutcome, StorageError> {
        let mut append = Some(QueuedAppend {
            name,
            request,
            result: None,
        });
        if let Some(outcome) = self.append_inline(&mut append) {
            return outcome;
        }
        let append = append.ok_or_else(storage_closed)?;
        let (reply, result) = oneshot::channel();
        self.send(Queued::Append(append, reply)).await?;
        result.await.map_err(|_| storage_closed())?
    }

    /// Takes `append` and commits it alone on this thread if inline appends are on, nothing is
    /// queued or being committed, and the write lock is free right now; else leaves it to be
    /// queued and returns `None`. Synchronous, so a caller dropped meanwhile cannot leave it
    /// half done.
    fn append_inline(
        &self,
        append: &mut Option<QueuedAppend>,
    ) -> Option<Result<AppendOutcome, StorageError>> {
        let owner = &*self.owner;
        if !owner.inline || owner.pending.load(Ordering::SeqCst) != 0 {
            return None;
        }
        let Ok(mut guard) = owner.conn.try_lock() else {
            return None;
        };
        let state = &mut *guard;
        // Checked under the lock: the thread holds it from before it counts a batch done until
        // after, so 0 here means no queued write is waiting to be committed first.
        if state.stopped || owner.pending.load(Ordering::SeqCst) != 0 {
            return None;
        }
        // Another process holding the write lock would make `BEGIN IMMEDIATE` wait up to the
        // busy timeout; the queue waits instead of this caller's thread.
        let began = state
            .conn
            .busy_timeout(Duration::ZERO)
            .and_then(|()| exec(&state.conn, "BEGIN IMMEDIATE"));
        let restored = state.conn.busy_timeout(owner.busy_timeout);
        if began.is_err() || restored.is_err() {
            if began.is_ok() {
                let _ = exec(&state.conn, "ROLLBACK");
            }
            return None;
        }
        let append = append.take()?;
        let (reply, mut result) = oneshot::channel();
        let mut batch = vec![Queued::Append(append, reply)];
        let (commit, due) =
            checkpoint::deferred(|| commit(state, &mut batch, true, &*owner.clock, &owner.recent));
        drop(guard);
        match due {
            Due::No => {}
            Due::Concurrent(pages) => owner.checkpointer.nudge(pages),
            Due::OnWriter => self.request_checkpoint(),
        }
        answer(&mut batch, &commit);
        Some(result.try_recv().unwrap_or_else(|_| Err(storage_closed())))
    }

    /// [`Checkpointer::wait_for_passes`] of the checkpoint thread.
    #[cfg(test)]
    pub(super) fn wait_for_checkpoint_passes(&self, at_least: u64, timeout: Duration) -> u64 {
        self.owner.checkpointer.wait_for_passes(at_least, timeout)
    }

    /// Asks the thread to checkpoint the WAL. If the queue is full the thread is busy
    /// committing batches, which checkpoint as they go.
    fn request_checkpoint(&self) {
        let Some(jobs) = self.owner.jobs.as_ref() else {
            return;
        };
        let mut pending = Pending::new(&self.owner.pending);
        pending.queued = jobs.try_send(Queued::Checkpoint).is_ok();
    }

    /// Commits what is queued, then ends the thread; later writes fail as closed.
    pub(super) async fn stop(&self) {
        let _ = self.send(Queued::Stop).await;
    }
}

fn run(
    conn: &Mutex<WriteConn>,
    mut queue: mpsc::Receiver<Queued>,
    pending: &AtomicUsize,
    clock: &dyn Clock,
    recent: &Recent,
    checkpointer: &Checkpointer,
) {
    let mut batch: Vec<Queued> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(queued) => batch.push(queued),
                Err(_) => break,
            }
        }
        let stop = batch.iter().any(|q| matches!(q, Queued::Stop));
        let requested = batch.iter().any(|q| matches!(q, Queued::Checkpoint));
        let taken = batch.len();
        // A poisoned lock only means an inline append panicked; the connection is still whole.
        let mut state = conn.lock().unwrap_or_else(|p| p.into_inner());
        // A checkpoint this commit makes due runs elsewhere or after the answers: it copies
        // the WAL into the database and fsyncs it (milliseconds), and what the batch's callers
        // were promised (the commit) does not depend on it.
        let (commit, due) =
            checkpoint::deferred(|| commit(&mut state, &mut batch, false, clock, recent));
        state.stopped |= stop;
        // Uncounted under the lock, so a lone append that sees 0 comes after this batch; and
        // before the answers, so a caller's next append finds the connection free (unless
        // this thread checkpoints next: the append then queues behind it).
        pending.fetch_sub(taken, Ordering::SeqCst);
        drop(state);
        answer(&mut batch, &commit);
        if requested || due == Due::OnWriter {
            // An inline append may take the connection first: the checkpoint then follows it.
            let state = conn.lock().unwrap_or_else(|p| p.into_inner());
            checkpointer.catch_up(&state.conn);
        } else if let Due::Concurrent(pages) = due {
            checkpointer.nudge(pages);
        }
        if stop {
            break;
        }
    }
}

/// Commits `batch` in one transaction (`begun`: `BEGIN IMMEDIATE` already ran) and brings the
/// cache up to date; returns what every write in it is to be answered (`answer`).
fn commit(
    state: &mut WriteConn,
    batch: &mut [Queued],
    begun: bool,
    clock: &dyn Clock,
    recent: &Recent,
) -> Result<(), String> {
    let conn = &state.conn;
    let commit = commit_batch(conn, batch, begun, clock, recent, &mut state.others);
    match commit {
        Ok(changes) => {
            recent.apply(changes);
            state.others = settle_trust(conn, recent, state.others);
            Ok(())
        }
        Err(e) => {
            let _ = exec(conn, "ROLLBACK");
            recent.distrust();
            state.others = None;
            Err(e)
        }
    }
}

/// Answers every write of a batch with the batch's `commit`.
fn answer(batch: &mut Vec<Queued>, commit: &Result<(), String>) {
    for queued in batch.drain(..) {
        queued.finish(commit.clone());
    }
}

/// After a commit applied to `recent`: trusts it at a reading taken now if this
/// connection's `data_version` is still `others` (as read inside the batch), so nobody else
/// committed before that reading; else empties it. Returns the `data_version` now.
fn settle_trust(conn: &Connection, recent: &Recent, others: Option<i64>) -> Option<i64> {
    // The order matters: the reading first, then the check that nobody else committed by then.
    let version = recent.version_now();
    let now = data_version(conn).ok();
    match (version, now) {
        (Some(version), Some(now)) if Some(now) == others => recent.trust(version),
        _ => recent.distrust(),
    }
    now
}

/// Runs `batch` in one transaction; returns what the cache must learn once it commits.
fn commit_batch(
    conn: &Connection,
    batch: &mut [Queued],
    begun: bool,
    clock: &dyn Clock,
    recent: &Recent,
    others: &mut Option<i64>,
) -> Result<Vec<Change>, String> {
    let failed = |what: &str, e: rusqlite::Error| format!("sqlite {what}: {e}");
    if !begun {
        exec(conn, "BEGIN IMMEDIATE").map_err(|e| failed("begin", e))?;
    }
    // Holding the write lock: a change since the last batch is someone else's commit.
    let version = data_version(conn).map_err(|e| failed("data_version", e))?;
    if *others != Some(version) {
        recent.distrust();
        *others = Some(version);
    }
    // Read only now: BEGIN IMMEDIATE may have waited up to busy_timeout for another instance's
    // write, and expiry must be judged (and last access written) at the time this batch
    // holds the lock, or an append could revive a stream that expired meanwhile.
    let now = now_ms(clock);
    let mut changes = Vec::new();
    // Until a job runs, this transaction has changed no stream row, so the rows the cache
    // holds are those in the database (it is trusted only if nobody else committed since it
    // was last brought up to date, checked above); a job may change any row.
    let mut job_ran = false;
    // Runs of consecutive appends are applied together; other jobs keep their queue position.
    let mut start = 0;
    while start < batch.len() {
        let end = batch[start..]
            .iter()
            .position(|q| !matches!(q, Queued::Append(..)))
            .map_or(batch.len(), |n| start + n);
        if end > start {
            let mut run: Vec<&mut QueuedAppend> = batch[start..end]
                .iter_mut()
                .filter_map(|q| match q {
                    Queued::Append(append, _) => Some(append),
                    _ => None,
                })
                .collect();
            let committed = (!job_ran).then_some(recent);
            let appended = batch_append::apply(conn, &mut run, now, recent.caching(), committed)
                .map_err(|e| format!("sqlite append: {e}"))?;
            changes.extend(appended);
            start = end;
        } else {
            if let Queued::Job(job, touches) = &mut batch[start] {
                job_ran = true;
                job.run(conn);
                changes.push(std::mem::replace(touches, Change::ForgetAll));
            }
            start += 1;
        }
    }
    exec(conn, "COMMIT").map_err(|e| failed("commit", e))?;
    Ok(changes)
}
