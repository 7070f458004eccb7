//! [`ExponentialBackoff`] with no, full, equal or decorrelated jitter.

use std::time::Duration;

use courier_traits::retry::{RetryContext, RetryDecision, RetryPolicy};

use super::limits::{RetryLimits, limit_builders, scaled};
use super::random::RetryRandom;

/// How an exponential delay is randomised (the formulas of the AWS architecture blog's
/// "Exponential Backoff and Jitter"; `d = min(cap, base * factor^(attempt-1))`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Jitter {
    /// Exactly `d`.
    None,
    /// Uniform in `[0, d]`: spreads retries the most.
    #[default]
    Full,
    /// Uniform in `[d/2, d]`: never retries too early.
    Equal,
    /// Uniform in `[base, min(cap, previous * 3)]`: grows from the previous delay.
    Decorrelated,
}

/// Exponential backoff: the delay grows by `factor` after each failure, up to `cap`,
/// randomised by a [`Jitter`]. Defaults: 100 ms base, factor 2, 10 s cap, full jitter,
/// 10 attempts.
///
/// ```
/// use std::time::Duration;
/// use courier_impls::retry::{ExponentialBackoff, Jitter};
///
/// let policy = ExponentialBackoff::new(Duration::from_millis(50))
///     .cap(Duration::from_secs(2))
///     .jitter(Jitter::Equal)
///     .max_attempts(6);
/// ```
#[derive(Debug)]
pub struct ExponentialBackoff {
    base: Duration,
    factor: f64,
    cap: Duration,
    jitter: Jitter,
    limits: RetryLimits,
    random: RetryRandom,
}

impl Default for ExponentialBackoff {
    fn default() -> Self {
        ExponentialBackoff::new(Duration::from_millis(100))
    }
}

impl ExponentialBackoff {
    /// Starts at `base` with the defaults above.
    pub fn new(base: Duration) -> ExponentialBackoff {
        ExponentialBackoff {
            base,
            factor: 2.0,
            cap: Duration::from_secs(10),
            jitter: Jitter::Full,
            limits: RetryLimits {
                max_attempts: Some(10),
                max_elapsed: None,
            },
            random: RetryRandom::from_entropy(),
        }
    }

    /// Growth factor per failure (at least 1).
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = if factor.is_finite() {
            factor.max(1.0)
        } else {
            2.0
        };
        self
    }

    /// Largest delay (before any server hint).
    pub fn cap(mut self, cap: Duration) -> Self {
        self.cap = cap.max(self.base);
        self
    }

    /// The jitter formula.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Uses a seeded random source: the same seed gives the same delays (for tests).
    pub fn seeded(mut self, seed: u64) -> Self {
        self.random = RetryRandom::seeded(seed);
        self
    }

    limit_builders!();

    /// The un-jittered delay before retry number `attempt` (1-based).
    fn ceiling(&self, attempt: u32) -> Duration {
        scaled(self.base, self.factor, attempt.saturating_sub(1), self.cap)
    }

    fn delay(&self, ctx: &RetryContext) -> Duration {
        let ceiling = self.ceiling(ctx.attempt);
        let nanos = |d: Duration| d.as_nanos();
        let pick = |low: Duration, high: Duration| {
            Duration::from_nanos(
                self.random
                    .between(nanos(low), nanos(high))
                    .min(u64::MAX as u128) as u64,
            )
        };
        match self.jitter {
            Jitter::None => ceiling,
            Jitter::Full => pick(Duration::ZERO, ceiling),
            Jitter::Equal => pick(ceiling / 2, ceiling),
            Jitter::Decorrelated => {
                let previous = ctx.previous_delay.unwrap_or(self.base);
                let high = previous.saturating_mul(3).min(self.cap).max(self.base);
                pick(self.base, high)
            }
        }
    }
}

impl RetryPolicy for ExponentialBackoff {
    fn decide(&self, ctx: &RetryContext) -> RetryDecision {
        self.limits.decide(ctx, || self.delay(ctx))
    }
}
