//! [`SqliteStorageConfig`]: the settings of a [`SqliteStreamStorage`](super::SqliteStreamStorage).

use std::sync::Arc;
use std::time::Duration;

use courier_traits::clock::{Clock, system_clock};

/// Settings of a [`SqliteStreamStorage`](super::SqliteStreamStorage): read the fields, build
/// with [`Default`] and the `with_*` setters.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SqliteStorageConfig {
    /// Largest single record accepted.
    pub max_record_bytes: usize,
    /// Connections in the pool (readers run in parallel under WAL; writers take turns).
    pub max_connections: u32,
    /// `true` (default): fsync on every commit (`synchronous = FULL`). `false`: `NORMAL`,
    /// faster, and a power loss may drop the last commits (never corrupts the file).
    pub fsync_every_commit: bool,
    /// How long a writer waits for the file lock before failing with a retryable error.
    pub busy_timeout: Duration,
    /// While someone waits, how often to check for commits made by other processes on the
    /// same file: the longest delay before such an append wakes a waiter here.
    pub change_poll_interval: Duration,
    /// Bytes of recent records kept in memory to answer reads near the tail without SQLite
    /// (each stream keeps at most a quarter; the least recently used streams go first).
    /// 0 turns the cache off.
    pub recent_bytes: usize,
    /// The clock expiry is decided against (default: the system clock).
    pub clock: Arc<dyn Clock>,
}

impl Default for SqliteStorageConfig {
    fn default() -> Self {
        SqliteStorageConfig {
            max_record_bytes: 64 << 20,
            max_connections: 4,
            fsync_every_commit: true,
            busy_timeout: Duration::from_secs(10),
            change_poll_interval: Duration::from_millis(50),
            recent_bytes: 32 << 20,
            clock: system_clock(),
        }
    }
}

impl SqliteStorageConfig {
    /// Sets [`max_record_bytes`](Self::max_record_bytes) (default 64 MiB).
    pub fn with_max_record_bytes(mut self, bytes: usize) -> SqliteStorageConfig {
        self.max_record_bytes = bytes;
        self
    }

    /// Sets [`max_connections`](Self::max_connections) (default 4; at least 1 is used).
    pub fn with_max_connections(mut self, connections: u32) -> SqliteStorageConfig {
        self.max_connections = connections;
        self
    }

    /// Sets [`fsync_every_commit`](Self::fsync_every_commit) (default `true`).
    pub fn with_fsync_every_commit(mut self, fsync: bool) -> SqliteStorageConfig {
        self.fsync_every_commit = fsync;
        self
    }

    /// Sets [`busy_timeout`](Self::busy_timeout) (default 10 s).
    pub fn with_busy_timeout(mut self, timeout: Duration) -> SqliteStorageConfig {
        self.busy_timeout = timeout;
        self
    }

    /// Sets [`change_poll_interval`](Self::change_poll_interval) (default 50 ms).
    pub fn with_change_poll_interval(mut self, interval: Duration) -> SqliteStorageConfig {
        self.change_poll_interval = interval;
        self
    }

    /// Sets [`recent_bytes`](Self::recent_bytes) (default 32 MiB; 0 turns the cache off).
    pub fn with_recent_bytes(mut self, bytes: usize) -> SqliteStorageConfig {
        self.recent_bytes = bytes;
        self
    }

    /// Decides expiry against `clock` (a test's manual clock) instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> SqliteStorageConfig {
        self.clock = clock;
        self
    }
}
