//! [`RedisStorageConfig`]: the settings of a [`RedisStreamStorage`](super::RedisStreamStorage).

use std::sync::Arc;
use std::time::Duration;

use courier_traits::clock::{Clock, system_clock};

/// Settings of a [`RedisStreamStorage`](super::RedisStreamStorage): read the fields, build with
/// [`Default`] and the `with_*` setters.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RedisStorageConfig {
    /// Prefix of every key.
    pub key_prefix: String,
    /// Largest single record accepted (Redis caps a value at 512 MiB).
    pub max_record_bytes: usize,
    /// The clock expiry is decided against (default: the system clock). Redis's own key
    /// expiry, a backstop only, runs on the server's clock.
    pub clock: Arc<dyn Clock>,
    /// How long one command may go unanswered before the call fails with a retryable error
    /// (`None`: wait forever). Default 10 s: long enough for an fsync stall of a server
    /// running `appendfsync always` under load (redis-rs's own default, 500 ms, failed appends
    /// that Redis then committed, answering 503 for stored records), short enough that a
    /// frozen server is reported within seconds. A write that times out may still commit:
    /// its outcome is unknown, which is why idempotent producers and dedup keys exist.
    pub response_timeout: Option<Duration>,
}

impl Default for RedisStorageConfig {
    fn default() -> Self {
        RedisStorageConfig {
            key_prefix: "courier:streams".into(),
            max_record_bytes: 64 << 20,
            clock: system_clock(),
            response_timeout: Some(Duration::from_secs(10)),
        }
    }
}

impl RedisStorageConfig {
    /// Sets [`key_prefix`](Self::key_prefix) (default `courier:streams`).
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> RedisStorageConfig {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets [`max_record_bytes`](Self::max_record_bytes) (default 64 MiB).
    pub fn with_max_record_bytes(mut self, bytes: usize) -> RedisStorageConfig {
        self.max_record_bytes = bytes;
        self
    }

    /// Sets [`response_timeout`](Self::response_timeout) (default 10 s).
    pub fn with_response_timeout(mut self, timeout: Option<Duration>) -> RedisStorageConfig {
        self.response_timeout = timeout;
        self
    }

    /// Decides expiry against `clock` (a test's manual clock) instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> RedisStorageConfig {
        self.clock = clock;
        self
    }
}
