//! Who checkpoints the WAL. SQLite's automatic checkpoint (PASSIVE, once the WAL holds 1 000
//! pages) would run in the commit that crosses the mark, on the committing thread, with the
//! write connection held: every write waits for the copy of the WAL into the database and its
//! fsyncs (milliseconds). Here that commit only notes that one is due, and:
//! - a thread of its own with its own connection runs it ([`Checkpointer`]), concurrently with
//!   the commits that follow, as WAL mode allows;
//! - a checkpoint concurrent with commits never catches up with the last one, and only one
//!   that does lets the next commit start the WAL over: so once the WAL holds
//!   [`WRITER_PAGES`], the writer thread checkpoints itself, after answering the batch, with
//!   nothing committing meanwhile, not even on another storage on the file: it holds the
//!   write lock ([`Checkpointer::catch_up`]). The passes before it have copied most of the
//!   WAL already.

use std::cell::Cell;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use rusqlite::Connection;
use rusqlite::hooks::Wal;

/// SQLite's default `wal_autocheckpoint`, in pages.
const AUTOCHECKPOINT_PAGES: c_int = 1000;

/// From this many WAL pages the writer thread checkpoints itself (see the module docs): the
/// WAL stays under ~16 MB with SQLite's 4 KiB pages.
const WRITER_PAGES: c_int = 4 * AUTOCHECKPOINT_PAGES;

thread_local! {
    /// Set while this thread commits: a due checkpoint is only noted.
    static DEFERRING: Cell<bool> = const { Cell::new(false) };
    /// The WAL's size in pages after the last commit made while deferring that found a
    /// checkpoint due; 0 if none did.
    static DUE: Cell<c_int> = const { Cell::new(0) };
}

/// Replaces SQLite's automatic checkpoint on `conn` (the writer's) by [`after_commit`].
pub(super) fn install(conn: &Connection) {
    conn.wal_hook(Some(after_commit));
}

/// After each commit, with the WAL's size in pages: checkpoints as SQLite's default would,
/// unless this thread is deferring (then notes it is due).
fn after_commit(wal: &Wal, pages: c_int) -> rusqlite::Result<()> {
    if pages < AUTOCHECKPOINT_PAGES {
        return Ok(());
    }
    if DEFERRING.get() {
        DUE.set(pages);
    } else {
        // As SQLite's default hook: a checkpoint that cannot finish now is retried after a
        // later commit; the commit itself succeeded.
        let _ = wal.checkpoint();
    }
    Ok(())
}

/// A checkpoint found due by a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Due {
    /// Nothing to do.
    No,
    /// For the [`Checkpointer`]'s thread, with the WAL's size in pages.
    Concurrent(c_int),
    /// For the writer thread, between batches.
    OnWriter,
}

/// Runs `commit` with checkpoints deferred; returns its value and what is due.
pub(super) fn deferred<T>(commit: impl FnOnce() -> T) -> (T, Due) {
    DEFERRING.set(true);
    DUE.set(0);
    let value = commit();
    DEFERRING.set(false);
    let due = match DUE.replace(0) {
        0 => Due::No,
        pages if pages >= WRITER_PAGES => Due::OnWriter,
        pages => Due::Concurrent(pages),
    };
    (value, due)
}

/// The thread that checkpoints concurrently with commits, on a connection of its own.
pub(super) struct Checkpointer {
    /// `None` once stopped; holds at most one nudge (more while it runs add nothing: its
    /// next pass copies everything committed by then).
    nudges: Mutex<Option<SyncSender<()>>>,
    /// The WAL's size in pages at the last nudge.
    nudged_at: AtomicI32,
    /// Passes the thread has finished, for tests to wait on (counted in every build, so the
    /// tests wait on the thread as it runs).
    #[cfg_attr(not(test), allow(dead_code))]
    passes: Arc<Passes>,
    /// The thread's connection, also used by the writer thread ([`Checkpointer::catch_up`]).
    conn: Arc<Mutex<Connection>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// A count of finished passes and a way to wait for it to grow.
#[derive(Default)]
struct Passes {
    count: Mutex<u64>,
    grew: Condvar,
}

impl Checkpointer {
    /// Starts the thread on `conn` (a connection to the writer's database).
    pub(super) fn start(conn: Connection) -> std::io::Result<Checkpointer> {
        let (nudges, nudged) = sync_channel(1);
        let passes = Arc::<Passes>::default();
        let conn = Arc::new(Mutex::new(conn));
        let thread = {
            let (passes, conn) = (passes.clone(), conn.clone());
            std::thread::Builder::new()
                .name("courier-sqlite-checkpoint".into())
                .spawn(move || checkpoint_when_nudged(&conn, &nudged, &passes))?
        };
        Ok(Checkpointer {
            nudges: Mutex::new(Some(nudges)),
            nudged_at: AtomicI32::new(0),
            passes,
            conn,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The writer thread's checkpoint past [`WRITER_PAGES`], one after which the next commit
    /// starts the WAL over: called on `writer`, the write connection, between batches.
    ///
    /// A commit starts the WAL over only if the WAL was wholly copied when its transaction
    /// began. With one storage on the file nothing commits while the writer thread
    /// checkpoints, so a passive pass on its own connection would do. With several (two
    /// nodes, two processes) the others keep committing, and a passive pass takes no write
    /// lock: their commits that begin while it copies find the WAL not yet copied and append
    /// to it, and the WAL grows for as long as the load lasts (up to 89 MB after 2 × 4 000
    /// appends of 1 KiB on a loaded machine, in 19 runs of 30). So the writer takes the write
    /// lock (`BEGIN IMMEDIATE`, waiting for it as a batch does) and this thread's connection
    /// copies the WAL meanwhile (a connection in a transaction cannot checkpoint); nothing can
    /// be appended to the WAL until the writer lets go, and the next commit, whoever makes
    /// it, starts the WAL over.
    ///
    /// Not RESTART: it waits for readers while it holds the write lock, so a reader that
    /// keeps a transaction open (a shell, a backup) would hold every write up. A passive pass
    /// never waits; such a reader only keeps the WAL from starting over until it lets go, as
    /// it would anyway. If another checkpoint is running, the pass does nothing and the next
    /// batch tries again.
    pub(super) fn catch_up(&self, writer: &Connection) {
        if writer.execute_batch("BEGIN IMMEDIATE").is_err() {
            return;
        }
        {
            let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
            passive(&conn);
        }
        let _ = writer.execute_batch("ROLLBACK");
    }

    /// Asks for a checkpoint pass of a WAL of `pages`, if it grew by another 1 000 pages
    /// since the last (or started over); never waits. Once the WAL is past the mark every
    /// commit finds a checkpoint due, and a pass per commit would fsync per commit.
    pub(super) fn nudge(&self, pages: c_int) {
        let last = self.nudged_at.load(Ordering::Relaxed);
        if pages >= last && pages < last + AUTOCHECKPOINT_PAGES {
            return;
        }
        self.nudged_at.store(pages, Ordering::Relaxed);
        if let Some(nudges) = &*self.nudges.lock().unwrap_or_else(PoisonError::into_inner) {
            let _ = nudges.try_send(());
        }
    }

    /// Waits up to `timeout` until the thread has finished `at_least` passes; returns how many
    /// it has.
    #[cfg(test)]
    pub(super) fn wait_for_passes(&self, at_least: u64, timeout: std::time::Duration) -> u64 {
        let count = self
            .passes
            .count
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (count, _) = self
            .passes
            .grew
            .wait_timeout_while(count, timeout, |count| *count < at_least)
            .unwrap_or_else(PoisonError::into_inner);
        *count
    }

    /// Ends the thread once its pass (if any) is done.
    pub(super) fn stop(&self) {
        self.nudges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A passive checkpoint pass on `conn`: it copies what it can while commits go on and never
/// waits (if another checkpoint is running it does nothing).
fn passive(conn: &Connection) {
    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
}

fn checkpoint_when_nudged(conn: &Mutex<Connection>, nudged: &Receiver<()>, passes: &Passes) {
    while nudged.recv().is_ok() {
        passive(&conn.lock().unwrap_or_else(PoisonError::into_inner));
        *passes.count.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        passes.grew.notify_all();
    }
}
