//! [`Clock`]: where a backend reads the wall-clock time its expiry decisions are made against.
//!
//! Stream expiry (a TTL's idle window, an absolute [`Expiry::At`](crate::storage::Expiry::At))
//! is decided in Rust by every storage, always against its configured clock. Production code
//! keeps the default [`SystemClock`]; a test hands the storage a [`ManualClock`] and moves time
//! forward itself instead of sleeping through a TTL.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use courier_traits::clock::{Clock, ManualClock};
//!
//! let clock = ManualClock::new(1_000);
//! let shared: Arc<dyn Clock> = Arc::new(clock.clone());
//! clock.advance(Duration::from_secs(2));
//! assert_eq!(shared.now_ms(), 3_000);
//! ```

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time, in milliseconds since the Unix epoch.
///
/// Object-safe: backends hold it as `Arc<dyn Clock>`.
pub trait Clock: Send + Sync + Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system's wall clock ([`SystemTime::now`]); the default of every storage.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            // A system clock set before 1970 reads as the epoch.
            .unwrap_or_default()
    }
}

/// The clock every storage uses unless its configuration names another.
pub fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A clock that only moves when told to, for tests. Clones share the same time.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    ms: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock reading `start_ms` milliseconds since the Unix epoch.
    pub fn new(start_ms: u64) -> ManualClock {
        ManualClock {
            ms: Arc::new(AtomicU64::new(start_ms)),
        }
    }

    /// A clock starting at the system's current time (so absolute expiries given as
    /// `SystemTime::now() + d` behave as they would in production until the test moves it).
    pub fn starting_now() -> ManualClock {
        ManualClock::new(SystemClock.now_ms())
    }

    /// Sets the time to `ms` milliseconds since the Unix epoch (it may go backwards).
    pub fn set_ms(&self, ms: u64) {
        self.ms.store(ms, Ordering::SeqCst);
    }

    /// Moves the time forward by `by` (saturating).
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        // fetch_update never fails with a closure that always returns Some.
        let _ = self
            .ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |ms| {
                Some(ms.saturating_add(by))
            });
    }

    /// This clock as the shared handle storages take.
    pub fn shared(&self) -> Arc<dyn Clock> {
        Arc::new(self.clone())
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_it() {
        let clock = ManualClock::new(10);
        let other = clock.shared();
        assert_eq!(other.now_ms(), 10);
        clock.advance(Duration::from_millis(1_500));
        assert_eq!(other.now_ms(), 1_510);
        clock.set_ms(5);
        assert_eq!(other.now_ms(), 5);
        clock.set_ms(u64::MAX - 1);
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.now_ms(), u64::MAX);
    }

    #[test]
    fn system_clock_reads_the_wall_clock() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as u64;
        let read = system_clock().now_ms();
        assert!(
            read >= before && read < before + 60_000,
            "{read} vs {before}"
        );
    }
}
