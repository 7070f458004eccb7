//! [`PgStorageConfig`]: the settings of a [`PgStreamStorage`](super::PgStreamStorage).

use std::sync::Arc;

use courier_traits::clock::{Clock, system_clock};

/// Settings of a [`PgStreamStorage`](super::PgStreamStorage): read the fields, build with
/// [`Default`] and the `with_*` setters.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PgStorageConfig {
    /// Largest single record accepted (Postgres caps a value at 1 GiB).
    pub max_record_bytes: usize,
    /// Connections in the pool (the listener uses one more).
    pub max_connections: u32,
    /// Schema for the tables (created if missing); `None` = the server's `search_path`.
    pub schema: Option<String>,
    /// The clock expiry is decided against (default: the system clock).
    pub clock: Arc<dyn Clock>,
}

impl Default for PgStorageConfig {
    fn default() -> Self {
        PgStorageConfig {
            max_record_bytes: 64 << 20,
            max_connections: 10,
            schema: None,
            clock: system_clock(),
        }
    }
}

impl PgStorageConfig {
    /// Sets [`max_record_bytes`](Self::max_record_bytes) (default 64 MiB).
    pub fn with_max_record_bytes(mut self, bytes: usize) -> PgStorageConfig {
        self.max_record_bytes = bytes;
        self
    }

    /// Sets [`max_connections`](Self::max_connections) (default 10; at least 1 is used).
    pub fn with_max_connections(mut self, connections: u32) -> PgStorageConfig {
        self.max_connections = connections;
        self
    }

    /// Sets [`schema`](Self::schema): the tables live in `schema` (letters, digits and `_`),
    /// created if missing (default: the server's `search_path`).
    pub fn with_schema(mut self, schema: impl Into<String>) -> PgStorageConfig {
        self.schema = Some(schema.into());
        self
    }

    /// Decides expiry against `clock` (a test's manual clock) instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> PgStorageConfig {
        self.clock = clock;
        self
    }
}
