//! [`PgConfig`]: the settings of a [`PgStreamStorage`](super::PgStreamStorage).

use std::sync::Arc;

use courier_traits::clock::{Clock, system_clock};

/// Settings of a [`PgStreamStorage`].
#[derive(Clone, Debug)]
pub struct PgConfig {
    /// Largest single record accepted (Postgres caps a value at 1 GiB).
    pub max_record_bytes: usize,
    /// Connections in the pool (the listener uses one more).
    pub max_connections: u32,
    /// Schema for the tables (created if missing); `None` = the server's `search_path`.
    pub schema: Option<String>,
    /// The clock expiry is decided against (default: the system clock).
    pub clock: Arc<dyn Clock>,
}

impl Default for PgConfig {
    fn default() -> Self {
        PgConfig {
            max_record_bytes: 64 << 20,
            max_connections: 10,
            schema: None,
            clock: system_clock(),
        }
    }
}

impl PgConfig {
    /// Decides expiry against `clock` (a test's manual clock) instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> PgConfig {
        self.clock = clock;
        self
    }
}
