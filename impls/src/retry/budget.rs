//! [`RetryBudget`]: a retry allowance shared by many clients, so a fleet cannot amplify an outage.

use std::sync::{Arc, Mutex, PoisonError};

use courier_traits::retry::{GiveUpReason, RetryContext, RetryDecision, RetryPolicy};
use tokio::time::Instant;

/// A token bucket of retries, shared by every policy wrapped with it.
///
/// Each success deposits `retry_ratio` tokens (0.1 = retries may add 10 % to the load); each
/// retry withdraws one. On top of that, `min_per_second` tokens trickle in over time so that a
/// quiet client can still retry now and then. The bucket holds at most `max_tokens`.
///
/// Like tower's budget, this bounds retries to a fraction of successful traffic: when the
/// backend is down, successes stop, the bucket drains, and clients stop retrying instead of
/// multiplying the load.
#[derive(Debug)]
pub struct RetryBudget {
    retry_ratio: f64,
    min_per_second: f64,
    max_tokens: f64,
    state: Mutex<BudgetState>,
}

#[derive(Debug)]
struct BudgetState {
    tokens: f64,
    refilled_at: Instant,
}

impl RetryBudget {
    /// A budget allowing retries worth `retry_ratio` of successes plus `min_per_second`,
    /// holding at most `max_tokens`; it starts full.
    pub fn new(retry_ratio: f64, min_per_second: f64, max_tokens: f64) -> Arc<RetryBudget> {
        let clean = |x: f64| if x.is_finite() { x.max(0.0) } else { 0.0 };
        let max_tokens = clean(max_tokens);
        Arc::new(RetryBudget {
            retry_ratio: clean(retry_ratio),
            min_per_second: clean(min_per_second),
            max_tokens,
            state: Mutex::new(BudgetState {
                tokens: max_tokens,
                refilled_at: Instant::now(),
            }),
        })
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut BudgetState) -> T) -> T {
        // The state is two numbers updated together; a poisoned lock cannot leave them torn.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let earned = now.duration_since(state.refilled_at).as_secs_f64() * self.min_per_second;
        state.tokens = (state.tokens + earned).min(self.max_tokens);
        state.refilled_at = now;
        f(&mut state)
    }

    /// Records a success.
    pub fn deposit(&self) {
        let (ratio, max) = (self.retry_ratio, self.max_tokens);
        self.with_state(|s| s.tokens = (s.tokens + ratio).min(max));
    }

    /// Takes one retry from the budget; false if it is empty.
    pub fn try_withdraw(&self) -> bool {
        self.with_state(|s| {
            if s.tokens >= 1.0 {
                s.tokens -= 1.0;
                true
            } else {
                false
            }
        })
    }

    /// Retries currently available (whole tokens).
    pub fn available(&self) -> u64 {
        self.with_state(|s| s.tokens.floor() as u64)
    }
}

impl Default for RetryBudget {
    /// 10 % of successes, 10 per second, at most 100 banked.
    fn default() -> Self {
        Arc::try_unwrap(RetryBudget::new(0.1, 10.0, 100.0))
            .unwrap_or_else(|_| unreachable!("fresh Arc"))
    }
}

/// A policy whose retries also need a token from a shared [`RetryBudget`].
#[derive(Debug)]
pub struct WithBudget<P> {
    inner: P,
    budget: Arc<RetryBudget>,
}

impl<P> WithBudget<P> {
    /// Wraps `inner`.
    pub fn new(inner: P, budget: Arc<RetryBudget>) -> WithBudget<P> {
        WithBudget { inner, budget }
    }
}

impl<P: RetryPolicy> RetryPolicy for WithBudget<P> {
    fn decide(&self, ctx: &RetryContext) -> RetryDecision {
        match self.inner.decide(ctx) {
            RetryDecision::RetryAfter(delay) if self.budget.try_withdraw() => {
                RetryDecision::RetryAfter(delay)
            }
            RetryDecision::RetryAfter(_) => RetryDecision::GiveUp(GiveUpReason::BudgetExhausted),
            give_up => give_up,
        }
    }

    fn on_success(&self) {
        self.budget.deposit();
        self.inner.on_success();
    }
}

/// Adds `.with_budget(..)` to every policy.
pub trait RetryPolicyExt: RetryPolicy + Sized {
    /// Makes every retry of this policy also take a token from `budget`.
    fn with_budget(self, budget: Arc<RetryBudget>) -> WithBudget<Self> {
        WithBudget::new(self, budget)
    }
}

impl<P: RetryPolicy + Sized> RetryPolicyExt for P {}
