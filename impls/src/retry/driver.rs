//! The [`retry`] driver: runs an async operation under a [`RetryPolicy`].

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use courier_traits::error::Classify;
use courier_traits::retry::{GiveUpReason, RetryContext, RetryDecision, RetryPolicy};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One retry about to happen, as an observer sees it.
pub struct RetryEvent<'a> {
    /// Attempts failed so far (1 after the first failure).
    pub attempt: u32,
    /// How long the driver will wait before the next attempt.
    pub delay: Duration,
    /// Time since the first attempt started.
    pub elapsed: Duration,
    /// The error that caused the retry.
    pub error: &'a (dyn fmt::Display + Send + Sync),
}

/// Sees every retry and the final give-up: for logs and metrics.
pub trait RetryObserver: Send + Sync {
    /// Called before each wait.
    fn on_retry(&self, event: &RetryEvent<'_>);
    /// Called when the driver gives up (not on cancellation).
    fn on_give_up(
        &self,
        _attempts: u32,
        _reason: GiveUpReason,
        _error: &(dyn fmt::Display + Send + Sync),
    ) {
    }
}

/// An observer that logs retries at `warn` and give-ups at `error` through `tracing`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TracingObserver;

impl RetryObserver for TracingObserver {
    fn on_retry(&self, e: &RetryEvent<'_>) {
        tracing::warn!(attempt = e.attempt, delay_ms = e.delay.as_millis() as u64, error = %e.error, "retrying");
    }
    fn on_give_up(
        &self,
        attempts: u32,
        reason: GiveUpReason,
        error: &(dyn fmt::Display + Send + Sync),
    ) {
        tracing::error!(attempts, %reason, %error, "giving up");
    }
}

/// Why the driver stopped without a success.
#[derive(Debug, thiserror::Error)]
pub enum RetryError<E> {
    /// The policy gave up; `error` is the last one.
    #[error("gave up after {attempts} attempts ({reason}): {error}")]
    GaveUp {
        /// The last error.
        error: E,
        /// How many attempts ran.
        attempts: u32,
        /// Why the policy stopped.
        reason: GiveUpReason,
    },
    /// The cancellation token fired.
    #[error("cancelled after {attempts} attempts")]
    Cancelled {
        /// The last error, if an attempt had failed.
        last_error: Option<E>,
        /// How many attempts had started.
        attempts: u32,
    },
}

impl<E> RetryError<E> {
    /// The last error of the operation, if any.
    pub fn into_last_error(self) -> Option<E> {
        match self {
            RetryError::GaveUp { error, .. } => Some(error),
            RetryError::Cancelled { last_error, .. } => last_error,
        }
    }
}

/// Runs operations under a policy, with an optional observer and cancellation token.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use courier_impls::retry::{FixedDelay, Retry};
/// use courier_traits::TransportError;
///
/// let mut calls = 0;
/// let result = Retry::new(FixedDelay::new(Duration::from_millis(1)))
///     .run(|_attempt| {
///         calls += 1;
///         let fail = calls < 3;
///         async move { if fail { Err(TransportError::Timeout(Duration::from_secs(1))) } else { Ok("done") } }
///     })
///     .await;
/// assert_eq!(result.unwrap(), "done");
/// # }
/// ```
pub struct Retry<P> {
    policy: P,
    observer: Option<Arc<dyn RetryObserver>>,
    cancel: Option<CancellationToken>,
}

impl<P: RetryPolicy> Retry<P> {
    /// A driver for `policy`.
    pub fn new(policy: P) -> Retry<P> {
        Retry {
            policy,
            observer: None,
            cancel: None,
        }
    }

    /// Reports every retry to `observer`.
    pub fn observer(mut self, observer: Arc<dyn RetryObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Stops (between or during attempts) when `token` is cancelled.
    pub fn cancel_on(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Runs `operation` (called with the 1-based attempt number) until it succeeds, the policy
    /// gives up, or the token is cancelled. An attempt in flight when the token fires is dropped.
    pub async fn run<T, E, F, Fut>(&self, mut operation: F) -> Result<T, RetryError<E>>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + fmt::Display + Send + Sync,
    {
        let started = Instant::now();
        let mut previous_delay = None;
        let mut last_error = None;
        let mut attempt = 0u32;
        loop {
            attempt = attempt.saturating_add(1);
            let outcome = match self.until_cancelled(operation(attempt)).await {
                Some(outcome) => outcome,
                None => {
                    return Err(RetryError::Cancelled {
                        last_error,
                        attempts: attempt,
                    });
                }
            };
            let error = match outcome {
                Ok(value) => {
                    self.policy.on_success();
                    return Ok(value);
                }
                Err(error) => error,
            };
            let ctx = RetryContext {
                attempt,
                elapsed: started.elapsed(),
                previous_delay,
                class: error.class(),
            };
            match self.policy.decide(&ctx) {
                RetryDecision::GiveUp(reason) => {
                    if let Some(observer) = &self.observer {
                        observer.on_give_up(attempt, reason, &error);
                    }
                    return Err(RetryError::GaveUp {
                        error,
                        attempts: attempt,
                        reason,
                    });
                }
                RetryDecision::RetryAfter(delay) => {
                    if let Some(observer) = &self.observer {
                        observer.on_retry(&RetryEvent {
                            attempt,
                            delay,
                            elapsed: ctx.elapsed,
                            error: &error,
                        });
                    }
                    previous_delay = Some(delay);
                    last_error = Some(error);
                    if self
                        .until_cancelled(tokio::time::sleep(delay))
                        .await
                        .is_none()
                    {
                        return Err(RetryError::Cancelled {
                            last_error,
                            attempts: attempt,
                        });
                    }
                }
            }
        }
    }

    async fn until_cancelled<F: Future>(&self, future: F) -> Option<F::Output> {
        match &self.cancel {
            None => Some(future.await),
            Some(token) => tokio::select! {
                biased;
                _ = token.cancelled() => None,
                output = future => Some(output),
            },
        }
    }
}

/// Runs `operation` under `policy` with no observer or cancellation: see [`Retry`].
pub async fn retry<P, T, E, F, Fut>(policy: P, operation: F) -> Result<T, RetryError<E>>
where
    P: RetryPolicy,
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Classify + fmt::Display + Send + Sync,
{
    Retry::new(policy).run(operation).await
}
