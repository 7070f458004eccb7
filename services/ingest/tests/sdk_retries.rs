//! I15 (with I11 and I12's SDK side): what is retried and what is not, the same body and
//! idempotency keys on every attempt, `Retry-After` as a floor, 413 splitting the batch.

mod common;

use std::time::Duration;

use common::{Errors, ScriptedServer, Step, builder, numbered};
use courier_impls::retry::FixedDelay;
use courier_traits::retry::{RetryContext, RetryDecision, RetryPolicy};
use tokio::time::Instant;

/// A policy with a tiny delay, so any longer wait comes from `Retry-After`.
fn quick() -> FixedDelay {
    FixedDelay::new(Duration::from_millis(10)).unlimited()
}

/// A custom policy that ignores server hints: the SDK must still wait `Retry-After`.
struct IgnoresHints;

impl RetryPolicy for IgnoresHints {
    fn decide(&self, _: &RetryContext) -> RetryDecision {
        RetryDecision::RetryAfter(Duration::from_millis(10))
    }
}

#[tokio::test(start_paused = true)]
async fn i15_5xx_reset_408_429_are_retried_with_the_same_body_and_retry_after_as_floor() {
    let server = ScriptedServer::new([
        Step::status(503),
        Step::reset(),
        Step::status(408),
        Step::retry_after(429, 7),
        Step::status(502),
    ]);
    let client = builder(&server)
        .max_retries(5)
        .retry_policy(IgnoresHints)
        .build()
        .expect("client");
    for seq in 0..3 {
        client.track(numbered(seq)).expect("tracked");
    }
    client.flush().await.expect("flushed");
    let seen = server.seen();
    assert_eq!(seen.len(), 6, "five failures, then success");
    for attempt in &seen[1..] {
        assert_eq!(attempt.body, seen[0].body, "same body on every attempt");
        assert_eq!(attempt.keys(), seen[0].keys(), "same idempotency keys");
    }
    let unique: std::collections::HashSet<_> = seen[0].keys().into_iter().collect();
    assert_eq!(unique.len(), 3, "one key per event");
    // Attempt 4 got `Retry-After: 7`; the policy alone would wait 10 ms.
    assert!(seen[4].at - seen[3].at >= Duration::from_secs(7));
    assert!(seen[3].at - seen[2].at < Duration::from_secs(1));
    let stats = client.stats();
    assert_eq!((stats.sent, stats.failed, stats.retries), (3, 0, 5));
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn i15_default_policy_also_waits_at_least_retry_after() {
    let server = ScriptedServer::new([Step::retry_after(503, 30)]);
    let client = builder(&server).build().expect("client");
    client.track(numbered(0)).expect("tracked");
    client.flush().await.expect("flushed");
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].at - seen[0].at >= Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn i11_a_response_later_than_the_timeout_is_retried_with_the_same_keys() {
    let server = ScriptedServer::new([Step::Hang]);
    let client = builder(&server)
        .request_timeout(Duration::from_secs(10))
        .retry_policy(quick())
        .build()
        .expect("client");
    let start = Instant::now();
    client.track(numbered(0)).expect("tracked");
    client.flush().await.expect("flushed");
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].at - start >= Duration::from_secs(10));
    assert_eq!(seen[0].keys(), seen[1].keys());
    assert_eq!(client.stats().sent, 1);
}

#[tokio::test(start_paused = true)]
async fn i15_400_and_401_are_terminal() {
    for status in [400, 401, 403, 422] {
        let server = ScriptedServer::new([Step::status(status)]);
        let errors = Errors::default();
        let client = builder(&server)
            .retry_policy(quick())
            .on_error(errors.callback())
            .build()
            .expect("client");
        for seq in 0..4 {
            client.track(numbered(seq)).expect("tracked");
        }
        client.flush().await.expect("flushed");
        assert_eq!(server.requests(), 1, "{status} is not retried");
        let stats = client.stats();
        assert_eq!((stats.sent, stats.failed, stats.retries), (0, 4, 0));
        let reported = errors.all();
        assert_eq!(reported.len(), 1);
        assert!(reported[0].contains(&status.to_string()), "{reported:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn i15_retries_run_out_after_max_retries() {
    let server = ScriptedServer::new([]);
    server.set_rule(|_| Some(Step::status(503)));
    let errors = Errors::default();
    let client = builder(&server)
        .max_retries(3)
        .retry_policy(quick())
        .on_error(errors.callback())
        .build()
        .expect("client");
    client.track(numbered(0)).expect("tracked");
    client.flush().await.expect("flushed");
    assert_eq!(server.requests(), 4, "the first attempt and 3 retries");
    let stats = client.stats();
    assert_eq!((stats.failed, stats.retries), (1, 3));
    assert!(
        errors.all()[0].contains("after 4 attempts"),
        "{:?}",
        errors.all()
    );
}

#[tokio::test(start_paused = true)]
async fn i15_413_splits_the_batch_in_halves_until_it_fits() {
    let server = ScriptedServer::new([]);
    // The server takes at most 2 events per request.
    server.set_rule(|seen| (seen.events.len() > 2).then(|| Step::status(413)));
    let client = builder(&server)
        .batch_size(8)
        .retry_policy(quick())
        .build()
        .expect("client");
    for seq in 0..8 {
        client.track(numbered(seq)).expect("tracked");
    }
    client.flush().await.expect("flushed");
    let sizes: Vec<usize> = server.seen().iter().map(|s| s.events.len()).collect();
    assert_eq!(sizes, [8, 4, 2, 2, 4, 2, 2]);
    let delivered: Vec<i64> = server
        .seen()
        .iter()
        .filter(|s| s.events.len() <= 2)
        .flat_map(|s| s.seqs())
        .collect();
    assert_eq!(delivered, (0..8).collect::<Vec<_>>(), "each once, in order");
    let stats = client.stats();
    assert_eq!((stats.sent, stats.failed, stats.retries), (8, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn i15_413_for_a_single_event_fails_it() {
    let server = ScriptedServer::new([]);
    server.set_rule(|_| Some(Step::status(413)));
    let errors = Errors::default();
    let client = builder(&server)
        .on_error(errors.callback())
        .build()
        .expect("client");
    client.track(numbered(0)).expect("tracked");
    client.flush().await.expect("flushed");
    assert_eq!(server.requests(), 1);
    assert_eq!(client.stats().failed, 1);
    assert!(errors.all()[0].contains("413"));
}

#[tokio::test(start_paused = true)]
async fn per_event_rejections_in_a_200_are_counted_and_reported_with_their_keys() {
    let server = ScriptedServer::new([Step::AcceptRejecting(vec![1])]);
    let errors = Errors::default();
    let client = builder(&server)
        .on_error(errors.callback())
        .build()
        .expect("client");
    client.track(numbered(0)).expect("tracked");
    client
        .track(numbered(1).idempotency_key("key-of-1"))
        .expect("tracked");
    client.track(numbered(2)).expect("tracked");
    client.flush().await.expect("flushed");
    let stats = client.stats();
    assert_eq!((stats.sent, stats.rejected), (2, 1));
    let reported = errors.all();
    assert_eq!(reported.len(), 1);
    assert!(reported[0].contains("key-of-1"), "{reported:?}");
    assert_eq!(server.requests(), 1, "a 200 is never retried");
}
