//! Opening a connection to the database file with the storage's settings.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::config::SqliteStorageConfig;

/// Prepared statements kept per connection: the storage runs a few dozen distinct ones.
const STATEMENT_CACHE: usize = 64;

/// Opens `path` (creating the file if missing) in WAL mode with `config`'s durability and
/// busy timeout.
pub(super) fn open(path: &Path, config: &SqliteStorageConfig) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(config.busy_timeout)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // journal_mode answers with the mode in effect, so it is read as a query.
    let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    // FULL: a commit returns after the WAL is fsync'd, so an acknowledged append survives a
    // power loss; NORMAL syncs only at checkpoints (a crash of the process loses nothing).
    let synchronous = if config.fsync_every_commit {
        "FULL"
    } else {
        "NORMAL"
    };
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.pragma_update(None, "foreign_keys", false)?;
    Ok(conn)
}
