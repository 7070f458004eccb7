//! [`RedisStorageConfig`]: the settings of a [`RedisStreamStorage`](super::RedisStreamStorage).

use std::sync::Arc;

use courier_traits::clock::{Clock, system_clock};

/// Settings of a [`RedisStreamStorage`].
#[derive(Clone, Debug)]
pub struct RedisStorageConfig {
    /// Prefix of every key.
    pub key_prefix: String,
    /// Largest single record accepted (Redis caps a value at 512 MiB).
    pub max_record_bytes: usize,
    /// The clock expiry is decided against (default: the system clock). Redis's own key
    /// expiry, a backstop only, runs on the server's clock.
    pub clock: Arc<dyn Clock>,
}

impl Default for RedisStorageConfig {
    fn default() -> Self {
        RedisStorageConfig {
            key_prefix: "courier:streams".into(),
            max_record_bytes: 64 << 20,
            clock: system_clock(),
        }
    }
}

impl RedisStorageConfig {
    /// Decides expiry against `clock` (a test's manual clock) instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> RedisStorageConfig {
        self.clock = clock;
        self
    }
}
