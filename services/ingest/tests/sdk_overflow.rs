//! I13: a million `track`s while the transport is stalled all return at once; the queue never
//! holds more than its capacity; every event not queued is counted as dropped.
//!
//! The per-call cost is printed (debug build, so only information, never asserted: speed
//! lives in benches/).

mod common;

use std::time::Duration;

use common::{ScriptedServer, builder, numbered};
use courier_ingest::sdk::TrackError;

#[tokio::test(start_paused = true)]
async fn i13_a_million_tracks_with_a_stalled_transport_never_wait() {
    const TOTAL: u64 = 1_000_000;
    const CHUNK: u64 = 10_000;
    let capacity = 10_000;
    let batch_size = 50;
    let server = ScriptedServer::dead();
    let client = builder(&server)
        .queue_capacity(capacity)
        .batch_size(batch_size)
        .request_timeout(Duration::from_secs(3_600))
        .build()
        .expect("client");
    // Time per call, for queued and for dropped events apart.
    let mut queued_nanos = Vec::new();
    let mut dropped_nanos = Vec::with_capacity(TOTAL as usize);
    let mut full = 0u64;
    for chunk in 0..TOTAL / CHUNK {
        for i in 0..CHUNK {
            let event = numbered((chunk * CHUNK + i) as i64);
            let started = std::time::Instant::now();
            let result = client.track(event);
            let took = started.elapsed().as_nanos() as u64;
            match result {
                Ok(()) => queued_nanos.push(took),
                Err(TrackError::QueueFull { capacity: c }) => {
                    dropped_nanos.push(took);
                    assert_eq!(c, capacity);
                    full += 1;
                }
                Err(other) => panic!("unexpected {other}"),
            }
        }
        // Lets the worker take what it can: one batch in flight (stalled) and the next formed.
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        let queued = client.stats().queued;
        assert!(
            queued <= (capacity + 2 * batch_size) as u64,
            "queue {queued} beyond capacity plus the two batches out of it"
        );
    }
    let stats = client.stats();
    assert_eq!(stats.dropped.queue_full, full);
    assert_eq!(
        stats.queued + full,
        TOTAL,
        "every event queued or counted as dropped"
    );
    assert!(stats.queued >= capacity as u64);
    assert_eq!(server.requests(), 1, "the one request still stalled");
    for (what, nanos) in [
        ("queued", &mut queued_nanos),
        ("dropped", &mut dropped_nanos),
    ] {
        nanos.sort_unstable();
        let pct = |p: f64| nanos[((nanos.len() - 1) as f64 * p) as usize];
        eprintln!(
            "I13 (debug build, information only): track of a {what} event: p50 {} ns, p99 {} ns, max {} ns over {} calls",
            pct(0.50),
            pct(0.99),
            nanos[nanos.len() - 1],
            nanos.len(),
        );
    }
    let report = tokio::time::timeout(Duration::from_secs(40), client.close())
        .await
        .expect("close returns within its timeout");
    assert_eq!(report.unsent, stats.queued);
}

#[tokio::test(start_paused = true)]
async fn every_refusal_is_counted_by_reason() {
    let server = ScriptedServer::new([]);
    let client = builder(&server)
        .max_event_bytes(1_024)
        .build()
        .expect("client");
    let big = courier_ingest::sdk::Event::custom("big").param("pad", "x".repeat(2_000));
    assert!(matches!(
        client.track(big),
        Err(TrackError::TooLarge { limit: 1_024, size }) if size > 2_000
    ));
    let unnamed = courier_ingest::sdk::Event::custom("");
    assert!(matches!(
        client.track(unnamed),
        Err(TrackError::InvalidEvent {
            field: "custom_event.event_name",
            ..
        })
    ));
    let misplaced = courier_ingest::sdk::Event::screen_view("home").param("x", 1);
    assert!(matches!(
        client.track(misplaced),
        Err(TrackError::InvalidEvent { field: "param", .. })
    ));
    client.track(numbered(0)).expect("tracked");
    client.close().await;
    assert!(matches!(client.track(numbered(1)), Err(TrackError::Closed)));
    let stats = client.stats();
    assert_eq!(
        (
            stats.dropped.too_large,
            stats.dropped.invalid,
            stats.dropped.closed,
            stats.dropped.queue_full,
            stats.sent
        ),
        (1, 2, 1, 0, 1)
    );
    assert_eq!(server.requests(), 1);
}
