//! Tests of the policies (seeded RNG, property bounds) and of the driver (paused tokio clock).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use courier_traits::TransportError;
use courier_traits::error::ErrorClass;
use courier_traits::retry::{GiveUpReason, RetryContext, RetryDecision, RetryPolicy};
use proptest::prelude::*;
use tokio_util::sync::CancellationToken;

use super::*;

const MS: Duration = Duration::from_millis(1);

fn ctx(attempt: u32, previous: Option<Duration>) -> RetryContext {
    RetryContext {
        attempt,
        elapsed: Duration::ZERO,
        previous_delay: previous,
        class: ErrorClass::TRANSIENT,
    }
}

fn delay(decision: RetryDecision) -> Duration {
    match decision {
        RetryDecision::RetryAfter(d) => d,
        RetryDecision::GiveUp(reason) => panic!("expected a retry, got give-up: {reason}"),
    }
}

fn exp(jitter: Jitter, seed: u64) -> ExponentialBackoff {
    ExponentialBackoff::new(100 * MS)
        .cap(Duration::from_secs(10))
        .jitter(jitter)
        .seeded(seed)
        .unlimited()
}

#[test]
fn no_jitter_doubles_up_to_the_cap() {
    let p = exp(Jitter::None, 0);
    let got: Vec<u128> = (1..=9)
        .map(|n| delay(p.decide(&ctx(n, None))).as_millis())
        .collect();
    assert_eq!(got, [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
    assert_eq!(
        delay(p.decide(&ctx(u32::MAX, None))),
        Duration::from_secs(10),
        "no overflow at huge attempts"
    );
}

#[test]
fn same_seed_same_delays() {
    for jitter in [Jitter::Full, Jitter::Equal, Jitter::Decorrelated] {
        let run = |seed| {
            let p = exp(jitter, seed);
            let mut prev = None;
            (1..=8)
                .map(|n| {
                    let d = delay(p.decide(&ctx(n, prev)));
                    prev = Some(d);
                    d
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7), "{jitter:?}");
        assert_ne!(run(7), run(8), "{jitter:?}: different seeds should differ");
    }
}

#[test]
fn linear_defaults_match_the_spec() {
    // 200 ms base, 5 s cap, 5 retries: attempt 6 gives up.
    let p = LinearBackoff::default().seeded(3);
    for n in 1..=5 {
        let d = delay(p.decide(&ctx(n, None)));
        let step = 200 * MS * n;
        assert!(
            d >= step / 2 && d <= step.min(Duration::from_secs(5)),
            "attempt {n}: {d:?}"
        );
    }
    assert_eq!(
        p.decide(&ctx(6, None)),
        RetryDecision::GiveUp(GiveUpReason::MaxAttempts)
    );
}

#[test]
fn permanent_errors_are_never_retried() {
    let permanent = RetryContext {
        class: ErrorClass::Permanent,
        ..ctx(1, None)
    };
    let policies: Vec<Box<dyn RetryPolicy>> = vec![
        Box::new(ExponentialBackoff::default()),
        Box::new(LinearBackoff::default()),
        Box::new(FixedDelay::default()),
        Box::new(NeverRetry),
    ];
    for p in &policies {
        assert_eq!(
            p.decide(&permanent),
            RetryDecision::GiveUp(GiveUpReason::Permanent)
        );
    }
    assert_eq!(
        NeverRetry.decide(&ctx(1, None)),
        RetryDecision::GiveUp(GiveUpReason::Never)
    );
}

#[test]
fn retry_after_hint_is_honoured_and_limits_apply() {
    let hinted = |elapsed| RetryContext {
        elapsed,
        class: ErrorClass::Transient {
            retry_after: Some(Duration::from_secs(3)),
        },
        ..ctx(1, None)
    };
    let p = FixedDelay::new(10 * MS).max_elapsed(Duration::from_secs(5));
    assert_eq!(
        p.decide(&hinted(Duration::ZERO)),
        RetryDecision::RetryAfter(Duration::from_secs(3))
    );
    assert_eq!(
        p.decide(&hinted(Duration::from_secs(3))),
        RetryDecision::GiveUp(GiveUpReason::MaxElapsed)
    );
    let p = FixedDelay::new(10 * MS).max_attempts(2);
    assert!(matches!(
        p.decide(&ctx(1, None)),
        RetryDecision::RetryAfter(_)
    ));
    assert_eq!(
        p.decide(&ctx(2, None)),
        RetryDecision::GiveUp(GiveUpReason::MaxAttempts)
    );
}

#[tokio::test(start_paused = true)]
async fn budget_drains_and_refills() {
    let budget = RetryBudget::new(0.5, 1.0, 2.0);
    let p = FixedDelay::new(MS).unlimited().with_budget(budget.clone());
    assert!(matches!(
        p.decide(&ctx(1, None)),
        RetryDecision::RetryAfter(_)
    ));
    assert!(matches!(
        p.decide(&ctx(1, None)),
        RetryDecision::RetryAfter(_)
    ));
    assert_eq!(
        p.decide(&ctx(1, None)),
        RetryDecision::GiveUp(GiveUpReason::BudgetExhausted)
    );
    p.on_success();
    p.on_success(); // two successes at 0.5 each buy one retry
    assert!(matches!(
        p.decide(&ctx(1, None)),
        RetryDecision::RetryAfter(_)
    ));
    assert_eq!(budget.available(), 0);
    tokio::time::advance(Duration::from_secs(1)).await; // min_per_second trickles one in
    assert_eq!(budget.available(), 1);
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(budget.available(), 2, "capped at max_tokens");
}

#[derive(Default)]
struct Recorder {
    retries: Mutex<Vec<(u32, Duration)>>,
    gave_up: Mutex<Option<(u32, GiveUpReason)>>,
}

impl RetryObserver for Recorder {
    fn on_retry(&self, e: &RetryEvent<'_>) {
        self.retries
            .lock()
            .expect("test lock")
            .push((e.attempt, e.delay));
    }
    fn on_give_up(
        &self,
        attempts: u32,
        reason: GiveUpReason,
        _error: &(dyn std::fmt::Display + Send + Sync),
    ) {
        *self.gave_up.lock().expect("test lock") = Some((attempts, reason));
    }
}

fn timeout_error() -> TransportError {
    TransportError::Timeout(Duration::from_secs(1))
}

#[tokio::test(start_paused = true)]
async fn driver_sleeps_the_policy_delays_and_reports_them() {
    let recorder = Arc::new(Recorder::default());
    let calls = AtomicU32::new(0);
    let start = tokio::time::Instant::now();
    let result = Retry::new(exp(Jitter::None, 0))
        .observer(recorder.clone())
        .run(|attempt| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if attempt < 4 {
                    Err(timeout_error())
                } else {
                    Ok(attempt)
                }
            }
        })
        .await;
    assert_eq!(result.expect("fourth attempt succeeds"), 4);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    let retries = recorder.retries.lock().expect("test lock").clone();
    assert_eq!(retries, vec![(1, 100 * MS), (2, 200 * MS), (3, 400 * MS)]);
    assert_eq!(
        start.elapsed(),
        700 * MS,
        "paused clock advanced exactly by the delays"
    );
}

#[tokio::test(start_paused = true)]
async fn driver_gives_up_with_the_last_error() {
    let recorder = Arc::new(Recorder::default());
    let result: Result<(), _> = Retry::new(FixedDelay::new(MS).max_attempts(3))
        .observer(recorder.clone())
        .run(|_| async { Err(timeout_error()) })
        .await;
    match result {
        Err(RetryError::GaveUp {
            attempts: 3,
            reason: GiveUpReason::MaxAttempts,
            error: TransportError::Timeout(_),
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        *recorder.gave_up.lock().expect("test lock"),
        Some((3, GiveUpReason::MaxAttempts))
    );
    let permanent: Result<(), _> = retry(FixedDelay::default(), |_| async {
        Err(TransportError::Protocol("bad".into()))
    })
    .await;
    assert!(matches!(
        permanent,
        Err(RetryError::GaveUp {
            attempts: 1,
            reason: GiveUpReason::Permanent,
            ..
        })
    ));
}

#[tokio::test(start_paused = true)]
async fn driver_stops_on_cancellation_while_waiting_and_while_running() {
    let token = CancellationToken::new();
    let canceller = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        canceller.cancel();
    });
    let start = tokio::time::Instant::now();
    let result: Result<(), _> = Retry::new(FixedDelay::new(Duration::from_secs(60)).unlimited())
        .cancel_on(token)
        .run(|_| async { Err(timeout_error()) })
        .await;
    assert!(matches!(
        result,
        Err(RetryError::Cancelled {
            attempts: 1,
            last_error: Some(_)
        })
    ));
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(5),
        "woke on cancel, not after the 60 s delay"
    );

    let token = CancellationToken::new();
    token.cancel();
    let result: Result<(), RetryError<TransportError>> = Retry::new(FixedDelay::default())
        .cancel_on(token)
        .run(|_| std::future::pending())
        .await;
    assert!(matches!(
        result,
        Err(RetryError::Cancelled {
            attempts: 1,
            last_error: None
        })
    ));
}

proptest! {
    #[test]
    fn exponential_delays_stay_within_their_formula(seed in any::<u64>(), attempt in 1u32..40, prev_ms in 0u64..20_000) {
        let base = 100 * MS;
        let cap = Duration::from_secs(10);
        let ceiling = base.saturating_mul(2u32.saturating_pow(attempt - 1)).min(cap);
        let full = delay(exp(Jitter::Full, seed).decide(&ctx(attempt, None)));
        prop_assert!(full <= ceiling);
        let equal = delay(exp(Jitter::Equal, seed).decide(&ctx(attempt, None)));
        prop_assert!(equal >= ceiling / 2 && equal <= ceiling);
        let prev = Duration::from_millis(prev_ms);
        let decorrelated = delay(exp(Jitter::Decorrelated, seed).decide(&ctx(attempt, Some(prev))));
        prop_assert!(decorrelated >= base);
        prop_assert!(decorrelated <= (prev * 3).min(cap).max(base));
    }

    #[test]
    fn linear_delays_stay_within_their_formula(seed in any::<u64>(), attempt in 1u32..6, base_ms in 1u64..1000) {
        let base = Duration::from_millis(base_ms);
        let cap = Duration::from_secs(5);
        let d = delay(LinearBackoff::new(base).seeded(seed).decide(&ctx(attempt, None)));
        let step = base * attempt;
        prop_assert!(d <= step.min(cap));
        prop_assert!(d >= (step / 2).min(cap));
    }

    #[test]
    fn hints_raise_but_never_lower_the_delay(seed in any::<u64>(), hint_ms in 0u64..30_000, attempt in 1u32..10) {
        let hint = Duration::from_millis(hint_ms);
        let hinted = RetryContext { class: ErrorClass::Transient { retry_after: Some(hint) }, ..ctx(attempt, None) };
        let d = delay(exp(Jitter::Full, seed).decide(&hinted));
        prop_assert!(d >= hint);
    }
}
