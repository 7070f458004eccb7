//! The random source behind jittered delays: seedable, so tests are repeatable.

use std::sync::{Mutex, PoisonError};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A thread-safe random source. [`RetryRandom::seeded`] gives the same sequence every run.
pub(crate) struct RetryRandom(Mutex<StdRng>);

impl RetryRandom {
    pub(crate) fn from_entropy() -> RetryRandom {
        RetryRandom(Mutex::new(StdRng::from_os_rng()))
    }

    pub(crate) fn seeded(seed: u64) -> RetryRandom {
        RetryRandom(Mutex::new(StdRng::seed_from_u64(seed)))
    }

    /// A uniform sample from `low..=high` (nanoseconds); `low` if the range is empty.
    pub(crate) fn between(&self, low: u128, high: u128) -> u128 {
        if high <= low {
            return low;
        }
        // The generator holds no invariant a panic could break, so a poisoned lock is fine.
        let mut rng = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        rng.random_range(low..=high)
    }

    /// A uniform factor from `low..=high`.
    pub(crate) fn factor(&self, low: f64, high: f64) -> f64 {
        let mut rng = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        rng.random_range(low..=high)
    }
}

impl Default for RetryRandom {
    fn default() -> Self {
        RetryRandom::from_entropy()
    }
}

impl std::fmt::Debug for RetryRandom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetryRandom")
    }
}
