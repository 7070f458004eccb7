//! Running the compare-and-set scripts: `EVAL` invocations, and the pacing of retries when
//! other nodes keep changing a stream first.

use std::time::Duration;

use courier_traits::storage::{StorageError, StreamName};
use redis;

/// How long a write keeps retrying when other nodes keep changing the stream first.
pub(super) const CAS_DEADLINE: Duration = Duration::from_secs(10);

/// `EVAL script` with its keys; arguments follow with `.arg(..)`.
pub(super) fn eval(script: &str, keys: &[String]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(keys.len());
    for key in keys {
        cmd.arg(key);
    }
    cmd
}

/// Paces compare-and-set retries: jittered exponential backoff up to a deadline.
pub(super) struct CasRetry {
    deadline: tokio::time::Instant,
    pause: Duration,
}

impl CasRetry {
    pub(super) fn new() -> CasRetry {
        CasRetry {
            deadline: tokio::time::Instant::now() + CAS_DEADLINE,
            pause: Duration::from_micros(200),
        }
    }

    /// Waits before the next attempt; false once the deadline has passed.
    pub(super) async fn again(&mut self) -> bool {
        if tokio::time::Instant::now() >= self.deadline {
            return false;
        }
        let jitter = rand::random_range(0.5..1.0);
        tokio::time::sleep(self.pause.mul_f64(jitter)).await;
        self.pause = (self.pause * 2).min(Duration::from_millis(50));
        true
    }
}

pub(super) fn contention(name: &StreamName) -> StorageError {
    StorageError::Unavailable {
        message: format!("stream {name} is changing too fast to write; retry"),
        source: None,
    }
}
