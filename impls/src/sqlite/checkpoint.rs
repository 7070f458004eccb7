//! Who checkpoints the WAL: SQLite's automatic checkpoint (PASSIVE, once the WAL holds 1 000
//! pages) would run in the commit that crosses the mark, on the committing thread, before its
//! callers hear back. Here that commit only notes that one is due, and the writer thread runs
//! it once the commit's callers are answered (`writer.rs`): a lone append committed on its
//! caller's thread must not wait for the checkpoint's writes and fsyncs, and the callers of a
//! batch need not either (their commit does not depend on it).

use std::cell::Cell;
use std::os::raw::c_int;

use rusqlite::Connection;
use rusqlite::hooks::Wal;

/// SQLite's default `wal_autocheckpoint`, in pages.
const AUTOCHECKPOINT_PAGES: c_int = 1000;

thread_local! {
    /// Set while this thread commits an append inline: a due checkpoint is only noted.
    static DEFERRING: Cell<bool> = const { Cell::new(false) };
    /// Whether a commit made while deferring found a checkpoint due.
    static DUE: Cell<bool> = const { Cell::new(false) };
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
        DUE.set(true);
    } else {
        // As SQLite's default hook: a checkpoint that cannot finish now is retried after a
        // later commit; the commit itself succeeded.
        let _ = wal.checkpoint();
    }
    Ok(())
}

/// Runs `commit` with checkpoints deferred; returns its value and whether one is due.
pub(super) fn deferred<T>(commit: impl FnOnce() -> T) -> (T, bool) {
    DEFERRING.set(true);
    DUE.set(false);
    let value = commit();
    DEFERRING.set(false);
    (value, DUE.replace(false))
}

/// Runs a checkpoint now (the writer thread, when a deferred one is due).
pub(super) fn run(conn: &Connection) {
    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
}
