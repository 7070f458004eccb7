//! The simple policies: [`LinearBackoff`], [`FixedDelay`], [`NeverRetry`].

use std::time::Duration;

use courier_traits::retry::{GiveUpReason, RetryContext, RetryDecision, RetryPolicy};

use super::limits::{RetryLimits, limit_builders};
use super::random::RetryRandom;

/// Linear backoff with jitter: `base * attempt * uniform(0.5, 1.0)`, capped, where `attempt`
/// is 1 for the first retry (the `base x (attempt+1)` of a 0-based count). Defaults: 200 ms
/// base, 5 s cap, 5 retries.
#[derive(Debug)]
pub struct LinearBackoff {
    base: Duration,
    cap: Duration,
    limits: RetryLimits,
    random: RetryRandom,
}

impl Default for LinearBackoff {
    fn default() -> Self {
        LinearBackoff {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(5),
            limits: RetryLimits {
                max_attempts: Some(6),
                max_elapsed: None,
            },
            random: RetryRandom::from_entropy(),
        }
    }
}

impl LinearBackoff {
    /// Steps of `base`, with the other defaults.
    pub fn new(base: Duration) -> LinearBackoff {
        LinearBackoff {
            base,
            ..LinearBackoff::default()
        }
    }

    /// Largest delay (before any server hint).
    pub fn cap(mut self, cap: Duration) -> Self {
        self.cap = cap;
        self
    }

    /// Uses a seeded random source (for tests).
    pub fn seeded(mut self, seed: u64) -> Self {
        self.random = RetryRandom::seeded(seed);
        self
    }

    limit_builders!();
}

impl RetryPolicy for LinearBackoff {
    fn decide(&self, ctx: &RetryContext) -> RetryDecision {
        self.limits.decide(ctx, || {
            let step = self.base.saturating_mul(ctx.attempt.max(1));
            step.mul_f64(self.random.factor(0.5, 1.0)).min(self.cap)
        })
    }
}

/// The same delay every time. Default: 1 s, 5 retries.
#[derive(Clone, Copy, Debug)]
pub struct FixedDelay {
    delay: Duration,
    limits: RetryLimits,
}

impl FixedDelay {
    /// Waits `delay` between attempts.
    pub fn new(delay: Duration) -> FixedDelay {
        FixedDelay {
            delay,
            limits: RetryLimits {
                max_attempts: Some(6),
                max_elapsed: None,
            },
        }
    }

    limit_builders!();
}

impl Default for FixedDelay {
    fn default() -> Self {
        FixedDelay::new(Duration::from_secs(1))
    }
}

impl RetryPolicy for FixedDelay {
    fn decide(&self, ctx: &RetryContext) -> RetryDecision {
        self.limits.decide(ctx, || self.delay)
    }
}

/// Never retries: the first error is final.
#[derive(Clone, Copy, Debug, Default)]
pub struct NeverRetry;

impl RetryPolicy for NeverRetry {
    fn decide(&self, ctx: &RetryContext) -> RetryDecision {
        if ctx.class.is_retryable() {
            RetryDecision::GiveUp(GiveUpReason::Never)
        } else {
            RetryDecision::GiveUp(GiveUpReason::Permanent)
        }
    }
}
