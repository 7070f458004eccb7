//! The header of a WAL-mode database's wal-index, read from its `-shm` file: whether anyone
//! committed since an earlier reading, for the price of one `pread`.
//!
//! Why: the recent-records cache must check, on every read it answers, that nobody committed
//! since it was last trusted (`recent.rs`). `PRAGMA data_version` answers that, but each call
//! begins and ends a read transaction, and in WAL mode that takes and drops a lock on the
//! `-shm` file with `fcntl` (profiled: 12 % of the server's CPU on GETs at the tail, more than
//! the rest of SQLite's share together).
//!
//! What is read: the wal-index header (<https://sqlite.org/walformat.html>, "The WAL-Index
//! Header"), 48 bytes that SQLite keeps twice at the start of the `-shm` file. Every commit
//! rewrites it (`iChange` counts commits, `mxFrame` is the last committed frame) before the
//! commit returns, the second copy first, then the first copy; SQLite's own readers read the
//! first copy, then the second, and trust them only when equal. So do we: two equal copies are
//! the state of some moment, and once a commit has returned, every later reading differs from
//! every reading taken before it. A reading taken while a commit rewrites the header either
//! differs (the cache is then not used) or shows the state before that commit (which has not
//! returned yet): never a state that hides a returned commit.
//!
//! Anything unexpected (no `-shm` file, another wal-index version, an uninitialised header, a
//! failed read) answers `None`, and the cache falls back to `PRAGMA data_version`.

use std::fs::File;
use std::path::PathBuf;

use rusqlite::Connection;

/// Bytes of one copy of the header.
const HEADER_BYTES: usize = 48;
/// `iVersion` of the wal-index format that SQLite has written since 3.7.0.
const WAL_INDEX_VERSION: u32 = 3_007_000;
/// Offset of `isInit` in the header (after `iVersion`, unused padding and `iChange`).
const IS_INIT: usize = 12;

/// One reading of the header: equal readings mean nobody committed in between.
pub(super) type HeaderReading = [u8; HEADER_BYTES];

/// The `-shm` file of a database, open for reading its wal-index header.
pub(super) struct WalIndex {
    shm: File,
}

impl WalIndex {
    /// The wal-index of `conn`'s main database, if it has a `-shm` file whose header reads.
    pub(super) fn of(conn: &Connection) -> Option<WalIndex> {
        let database = conn.path().filter(|path| !path.is_empty())?;
        let shm = File::open(PathBuf::from(format!("{database}-shm"))).ok()?;
        let index = WalIndex { shm };
        index.read().map(|_| index)
    }

    /// The header now, or `None` if its two copies differ (a commit is rewriting it) or it
    /// is not one this code understands.
    pub(super) fn read(&self) -> Option<HeaderReading> {
        let mut both = [0u8; 2 * HEADER_BYTES];
        read_start(&self.shm, &mut both)?;
        let (first, second) = both.split_at(HEADER_BYTES);
        let first: HeaderReading = first.try_into().ok()?;
        let version = u32::from_ne_bytes(first[..4].try_into().ok()?);
        (first == second && version == WAL_INDEX_VERSION && first[IS_INIT] != 0).then_some(first)
    }
}

/// Fills `buf` from the start of `file` without moving a shared cursor.
#[cfg(unix)]
fn read_start(file: &File, buf: &mut [u8]) -> Option<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, 0).ok()
}

/// Elsewhere nothing is read, and the cache checks with `PRAGMA data_version`.
#[cfg(not(unix))]
fn read_start(_file: &File, _buf: &mut [u8]) -> Option<()> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory of this test's own (removed at the end of each test).
    fn temp_dir(what: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "courier-{what}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ))
    }

    fn wal_database(path: &std::path::Path) -> Connection {
        let conn = Connection::open(path).expect("open");
        let _: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .expect("wal");
        conn.execute_batch("CREATE TABLE t (x INTEGER)")
            .expect("table");
        conn
    }

    /// Every commit, by this connection or another one on the file, changes the reading;
    /// reads do not.
    #[test]
    fn the_reading_moves_with_every_commit_and_only_then() {
        let dir = temp_dir("wal-index");
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("db.sqlite");
        let writer = wal_database(&path);
        let other = Connection::open(&path).expect("open");
        let index = WalIndex::of(&writer).expect("a wal-index header");
        let mut last = index.read().expect("reading");
        for (round, conn) in [&writer, &other, &writer, &other].into_iter().enumerate() {
            conn.execute("INSERT INTO t VALUES (?1)", [round as i64])
                .expect("commit");
            let now = index.read().expect("reading");
            assert_ne!(now, last, "commit {round} did not change the header");
            let _: i64 = other
                .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
                .expect("read");
            assert_eq!(index.read(), Some(now), "a read changed the header");
            last = now;
        }
        drop((writer, other));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// No `-shm` file (not WAL mode, or an in-memory database): no reading, so the caller
    /// falls back to `PRAGMA data_version`.
    #[test]
    fn without_a_wal_index_there_is_no_reading() {
        let dir = temp_dir("wal-index-none");
        std::fs::create_dir_all(&dir).expect("dir");
        let rollback = Connection::open(dir.join("rollback.sqlite")).expect("open");
        rollback
            .execute_batch("CREATE TABLE t (x INTEGER)")
            .expect("table");
        assert!(WalIndex::of(&rollback).is_none());
        assert!(WalIndex::of(&Connection::open_in_memory().expect("open")).is_none());
        drop(rollback);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
