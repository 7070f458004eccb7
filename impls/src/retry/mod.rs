//! Retry policies (always compiled) and the [`retry`] driver.
//!
//! | policy | delay before retry `n` (1-based) |
//! |---|---|
//! | [`ExponentialBackoff`] + [`Jitter::None`] | `d = min(cap, base * factor^(n-1))` |
//! | [`ExponentialBackoff`] + [`Jitter::Full`] | uniform `[0, d]` |
//! | [`ExponentialBackoff`] + [`Jitter::Equal`] | uniform `[d/2, d]` |
//! | [`ExponentialBackoff`] + [`Jitter::Decorrelated`] | uniform `[base, min(cap, 3 * previous)]` |
//! | [`LinearBackoff`] | `min(cap, base * n * uniform(0.5, 1))` |
//! | [`FixedDelay`] | constant |
//! | [`NeverRetry`] | gives up at once |
//!
//! Every built-in gives up on permanent errors, obeys `max_attempts` / `max_elapsed`, and waits
//! at least a server's retry-after hint. Wrap any policy with a shared [`RetryBudget`]
//! ([`RetryPolicyExt::with_budget`]) to cap retries across a fleet of clients.

mod budget;
mod driver;
mod exponential;
mod limits;
mod random;
mod simple;
#[cfg(test)]
mod tests;

pub use budget::{RetryBudget, RetryPolicyExt, WithBudget};
pub use driver::{Retry, RetryError, RetryEvent, RetryObserver, TracingObserver, retry};
pub use exponential::{ExponentialBackoff, Jitter};
pub use limits::RetryLimits;
pub use simple::{FixedDelay, LinearBackoff, NeverRetry};
