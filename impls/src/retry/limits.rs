//! Limits every built-in policy shares, and the steps of a decision they all take.

use std::time::Duration;

use courier_traits::retry::{GiveUpReason, RetryContext, RetryDecision};

/// Attempt and time limits of a policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetryLimits {
    /// Give up once this many attempts (the first one included) have failed.
    pub max_attempts: Option<u32>,
    /// Give up when the next attempt would start later than this after the first one.
    pub max_elapsed: Option<Duration>,
}

impl RetryLimits {
    /// The common decision around a policy's own delay formula: permanent errors stop at once,
    /// the limits apply, and a server's retry-after hint raises the delay to at least the hint.
    pub(crate) fn decide(
        &self,
        ctx: &RetryContext,
        delay: impl FnOnce() -> Duration,
    ) -> RetryDecision {
        if !ctx.class.is_retryable() {
            return RetryDecision::GiveUp(GiveUpReason::Permanent);
        }
        if self.max_attempts.is_some_and(|max| ctx.attempt >= max) {
            return RetryDecision::GiveUp(GiveUpReason::MaxAttempts);
        }
        let delay = match ctx.class.retry_after() {
            Some(hint) => delay().max(hint),
            None => delay(),
        };
        if self
            .max_elapsed
            .is_some_and(|max| ctx.elapsed.saturating_add(delay) > max)
        {
            return RetryDecision::GiveUp(GiveUpReason::MaxElapsed);
        }
        RetryDecision::RetryAfter(delay)
    }
}

/// Builder methods for the limits, shared by every built-in policy.
macro_rules! limit_builders {
    () => {
        /// Gives up once `attempts` attempts (the first included) have failed.
        pub fn max_attempts(mut self, attempts: u32) -> Self {
            self.limits.max_attempts = Some(attempts.max(1));
            self
        }

        /// Allows at most `retries` retries after the first attempt.
        pub fn max_retries(mut self, retries: u32) -> Self {
            self.limits.max_attempts = Some(retries.saturating_add(1));
            self
        }

        /// Gives up when the next attempt would start later than `limit` after the first.
        pub fn max_elapsed(mut self, limit: std::time::Duration) -> Self {
            self.limits.max_elapsed = Some(limit);
            self
        }

        /// Removes the attempt and time limits (retry transient errors forever).
        pub fn unlimited(mut self) -> Self {
            self.limits = $crate::retry::RetryLimits::default();
            self
        }
    };
}
pub(crate) use limit_builders;

/// `base * factor^exponent`, saturating at `cap`.
pub(crate) fn scaled(base: Duration, factor: f64, exponent: u32, cap: Duration) -> Duration {
    let nanos = base.as_nanos() as f64 * factor.powi(exponent.min(1024) as i32);
    if !nanos.is_finite() || nanos >= cap.as_nanos() as f64 {
        cap
    } else {
        Duration::from_nanos(nanos as u64)
    }
}
