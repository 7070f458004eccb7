//! [`RetryPolicy`]: decides whether and when to try an operation again.
//!
//! A policy is a pure decision: given the attempt number, the time spent so far, the previous
//! delay and the error's [`ErrorClass`], it answers [`RetryDecision::RetryAfter`] or
//! [`RetryDecision::GiveUp`]. It never sleeps and never runs the operation; the `retry` driver
//! in `courier-impls` does that, honouring cancellation and reporting each retry to an
//! observer.
//!
//! Policies are shared (`&self`) between concurrent operations: per-operation state such as
//! the previous delay (decorrelated jitter) travels in [`RetryContext`], not in the policy.
//!
//! # Server hints
//!
//! When the error carries a retry-after hint, built-in policies wait at least that long (still
//! bounded by their elapsed-time limit), so clients never hammer a server that asked them to
//! back off.

use std::time::Duration;

use crate::error::ErrorClass;

/// What a policy knows when deciding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryContext {
    /// How many attempts have failed so far (1 after the first failure).
    pub attempt: u32,
    /// Time since the first attempt started.
    pub elapsed: Duration,
    /// The delay chosen before the previous attempt (`None` before the first retry).
    pub previous_delay: Option<Duration>,
    /// The class of the error that just happened.
    pub class: ErrorClass,
}

impl RetryContext {
    /// The context after the first failure with `class`.
    pub fn first(class: ErrorClass) -> RetryContext {
        RetryContext {
            attempt: 1,
            elapsed: Duration::ZERO,
            previous_delay: None,
            class,
        }
    }
}

/// Why a policy stopped retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GiveUpReason {
    /// The error is permanent.
    Permanent,
    /// The attempt limit was reached.
    MaxAttempts,
    /// The elapsed-time limit was (or would be) exceeded.
    MaxElapsed,
    /// The shared retry budget is empty: too many retries across all clients right now.
    BudgetExhausted,
    /// The policy never retries.
    Never,
}

impl std::fmt::Display for GiveUpReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GiveUpReason::Permanent => "the error is permanent",
            GiveUpReason::MaxAttempts => "the attempt limit was reached",
            GiveUpReason::MaxElapsed => "the time limit was reached",
            GiveUpReason::BudgetExhausted => "the retry budget is exhausted",
            GiveUpReason::Never => "the policy never retries",
        })
    }
}

/// A policy's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    /// Wait this long, then try again.
    RetryAfter(Duration),
    /// Stop and report the last error.
    GiveUp(GiveUpReason),
}

/// Decides whether and when to retry. See the [module docs](self).
///
/// # Example
///
/// A policy that retries transient errors three times, a second apart:
///
/// ```
/// use std::time::Duration;
/// use courier_traits::retry::*;
///
/// struct ThreeTimes;
/// impl RetryPolicy for ThreeTimes {
///     fn decide(&self, ctx: &RetryContext) -> RetryDecision {
///         if !ctx.class.is_retryable() {
///             RetryDecision::GiveUp(GiveUpReason::Permanent)
///         } else if ctx.attempt > 3 {
///             RetryDecision::GiveUp(GiveUpReason::MaxAttempts)
///         } else {
///             RetryDecision::RetryAfter(Duration::from_secs(1))
///         }
///     }
/// }
/// ```
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait RetryPolicy: Send + Sync {
    /// Decides what to do after a failed attempt.
    fn decide(&self, ctx: &RetryContext) -> RetryDecision;

    /// Called when an attempt succeeds (a retry budget refills from successes).
    fn on_success(&self) {}
}

impl<P: RetryPolicy + ?Sized> RetryPolicy for std::sync::Arc<P> {
    fn decide(&self, ctx: &RetryContext) -> RetryDecision {
        (**self).decide(ctx)
    }
    fn on_success(&self) {
        (**self).on_success()
    }
}

impl<P: RetryPolicy + ?Sized> RetryPolicy for Box<P> {
    fn decide(&self, ctx: &RetryContext) -> RetryDecision {
        (**self).decide(ctx)
    }
    fn on_success(&self) {
        (**self).on_success()
    }
}

impl<P: RetryPolicy + ?Sized> RetryPolicy for &P {
    fn decide(&self, ctx: &RetryContext) -> RetryDecision {
        (**self).decide(ctx)
    }
    fn on_success(&self) {
        (**self).on_success()
    }
}
