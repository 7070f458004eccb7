//! The checker's seeded randomness: one seed per run, printed, so a failing run can be replayed.
//!
//! The generator is SplitMix64, written out here rather than taken from a crate, so a seed keeps
//! meaning the same choices across dependency upgrades. Replaying a seed repeats every random
//! choice (operations, payloads, targets, fault kinds and timing of the schedule); it cannot
//! repeat the interleaving the OS scheduler chose, so a seed makes a failure likely to recur,
//! not certain.

use std::time::Duration;

/// The environment variable that fixes the seed of a run.
pub const SEED_ENV: &str = "COURIER_CHECKER_SEED";
/// The environment variable that sets how long a run's workload lasts, in seconds.
pub const SECS_ENV: &str = "COURIER_CHECKER_SECS";

/// The seed of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seed(pub u64);

impl Seed {
    /// The seed from `COURIER_CHECKER_SEED`, or a fresh one; printed either way (to stderr, which
    /// test runners show for failing tests) with the line that replays it.
    pub fn from_env(what: &str) -> Seed {
        let fixed = std::env::var(SEED_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok());
        let seed = Seed(fixed.unwrap_or_else(fresh_seed));
        eprintln!(
            "checker {what}: seed {} ({}; replay with {SEED_ENV}={})",
            seed.0,
            if fixed.is_some() {
                "from the environment"
            } else {
                "random"
            },
            seed.0
        );
        seed
    }

    /// An independent generator for one participant (client, fault schedule, ...), so the
    /// choices of one do not shift when another makes more or fewer of them.
    pub fn rng(self, participant: u64) -> Rng {
        let mut mixer = Rng(self.0 ^ participant.wrapping_mul(0xA076_1D64_78BD_642F));
        Rng(mixer.next_u64())
    }
}

impl std::fmt::Display for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{SEED_ENV}={}", self.0)
    }
}

fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    Rng(nanos ^ u64::from(std::process::id()).rotate_left(32)).next_u64()
}

/// How long the workload of a run lasts: `COURIER_CHECKER_SECS`, else `default`.
pub fn run_duration(default: Duration) -> Duration {
    std::env::var(SECS_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(default)
}

/// SplitMix64: small, fast, and good enough to pick operations.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// True with probability `percent` / 100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One element of `items`, or `None` if it is empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len() as u64) as usize)
    }

    /// A duration in `[low, high)`.
    pub fn duration(&mut self, low: Duration, high: Duration) -> Duration {
        let span = high.saturating_sub(low).as_millis() as u64;
        low + Duration::from_millis(self.below(span))
    }

    /// The index chosen by `weights` (each weight its relative chance).
    pub fn weighted(&mut self, weights: &[u64]) -> usize {
        let total: u64 = weights.iter().sum();
        let mut roll = self.below(total);
        for (index, weight) in weights.iter().enumerate() {
            if roll < *weight {
                return index;
            }
            roll -= weight;
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_the_same_choices() {
        let draw = |seed: u64| {
            let mut rng = Seed(seed).rng(3);
            (0..8).map(|_| rng.below(1000)).collect::<Vec<_>>()
        };
        assert_eq!(draw(42), draw(42));
        assert_ne!(draw(42), draw(43));
    }

    #[test]
    fn participants_draw_independently() {
        let mut a = Seed(7).rng(1);
        let mut b = Seed(7).rng(2);
        assert_ne!(a.next_u64(), b.next_u64());
    }

    #[test]
    fn weighted_choices_follow_the_weights() {
        let mut rng = Seed(1).rng(0);
        let mut counts = [0u32; 3];
        for _ in 0..10_000 {
            counts[rng.weighted(&[1, 0, 3])] += 1;
        }
        assert_eq!(counts[1], 0);
        assert!((2_000..3_000).contains(&counts[0]), "{counts:?}");
    }
}
