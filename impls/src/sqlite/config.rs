//! [`SqliteConfig`]: the settings of a [`SqliteStreamStorage`](super::SqliteStreamStorage).

use std::sync::Arc;
use std::time::Duration;

use courier_traits::clock::{Clock, system_clock};

/// Settings of a [`SqliteStreamStorage`].
#[derive(Clone, Debug)]
pub struct SqliteConfig {
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
    /// The clock expiry is decided against (default: the system clock).
    pub clock: Arc<dyn Clock>,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            max_record_bytes: 64 << 20,
            max_connections: 4,
            fsync_every_commit: true,
            busy_timeout: Duration::from_secs(10),
            change_poll_interval: Duration::from_millis(50),
            clock: system_clock(),
        }
    }
}

impl SqliteConfig {
    /// Decides expiry against `clock` (a test's manual clock) instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> SqliteConfig {
        self.clock = clock;
        self
    }
}
