//! I14: batches form by count, by bytes and by interval (paused clock); `flush` drains every
//! batch queued before it, in order, without waiting for the interval.

mod common;

use std::time::Duration;

use common::{ScriptedServer, builder, numbered, settle};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn i14_count_trigger_sends_full_batches_and_holds_the_rest_for_the_interval() {
    let server = ScriptedServer::new([]);
    let client = builder(&server)
        .batch_size(10)
        .flush_interval(Duration::from_secs(30))
        .build()
        .expect("client");
    let start = Instant::now();
    for seq in 0..25 {
        client.track(numbered(seq)).expect("tracked");
    }
    settle().await;
    let seen = server.seen();
    assert_eq!(
        seen.iter().map(|s| s.events.len()).collect::<Vec<_>>(),
        [10, 10],
        "two full batches go at once"
    );
    tokio::time::sleep_until(start + Duration::from_millis(29_900)).await;
    assert_eq!(
        server.requests(),
        2,
        "the partial batch waits for the interval"
    );
    tokio::time::sleep_until(start + Duration::from_millis(30_100)).await;
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].events.len(), 5);
    assert!(seen[2].at - start >= Duration::from_secs(30));
    let seqs: Vec<i64> = seen.iter().flat_map(|s| s.seqs()).collect();
    assert_eq!(seqs, (0..25).collect::<Vec<_>>(), "in order");
    assert_eq!(client.stats().sent, 25);
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn i14_interval_trigger_sends_a_lone_event_after_the_interval() {
    let server = ScriptedServer::new([]);
    let client = builder(&server)
        .flush_interval(Duration::from_secs(5))
        .build()
        .expect("client");
    let start = Instant::now();
    client.track(numbered(0)).expect("tracked");
    tokio::time::sleep(Duration::from_millis(4_999)).await;
    assert_eq!(server.requests(), 0);
    tokio::time::sleep(Duration::from_millis(2)).await;
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].at - start, Duration::from_secs(5));
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn i14_bytes_trigger_keeps_every_body_under_the_limit_and_packs_it() {
    let server = ScriptedServer::new([]);
    let max_batch_bytes = 2_000;
    let client = builder(&server)
        .batch_size(1_000)
        .max_event_bytes(1_000)
        .max_batch_bytes(max_batch_bytes)
        .build()
        .expect("client");
    let pad = "x".repeat(150);
    for seq in 0..40 {
        client
            .track(numbered(seq).param("pad", pad.as_str()))
            .expect("tracked");
    }
    client.flush().await.expect("flushed");
    let seen = server.seen();
    assert!(seen.len() > 1, "the byte limit split the events");
    for (i, request) in seen.iter().enumerate() {
        assert!(
            request.body.len() <= max_batch_bytes,
            "{}",
            request.body.len()
        );
        if let Some(next) = seen.get(i + 1) {
            // The batch was closed because the next event did not fit.
            let next_event = serde_json::to_vec(&next.events[0]).expect("json");
            assert!(request.body.len() + 1 + next_event.len() > max_batch_bytes);
        }
    }
    let seqs: Vec<i64> = seen.iter().flat_map(|s| s.seqs()).collect();
    assert_eq!(seqs, (0..40).collect::<Vec<_>>());
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn i14_flush_drains_every_batch_queued_before_it_without_waiting_the_interval() {
    let server = ScriptedServer::new([]);
    let client = builder(&server)
        .batch_size(10)
        .flush_interval(Duration::from_secs(3_600))
        .build()
        .expect("client");
    let start = Instant::now();
    for seq in 0..95 {
        client.track(numbered(seq)).expect("tracked");
    }
    client.flush().await.expect("flushed");
    assert!(Instant::now() - start < Duration::from_secs(1));
    let seen = server.seen();
    assert_eq!(
        seen.iter().map(|s| s.events.len()).collect::<Vec<_>>(),
        [10, 10, 10, 10, 10, 10, 10, 10, 10, 5]
    );
    let stats = client.stats();
    assert_eq!((stats.sent, stats.queued), (95, 0));
    // A flush with nothing queued returns at once; a second round drains too.
    client.flush().await.expect("empty flush");
    for seq in 95..98 {
        client.track(numbered(seq)).expect("tracked");
    }
    client.flush().await.expect("flushed");
    assert_eq!(
        server.seen().last().map(|s| s.seqs()),
        Some(vec![95, 96, 97])
    );
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn i14_next_batch_forms_while_one_request_is_in_flight() {
    // The first request hangs until its timeout: no second request starts meanwhile, and the
    // timed-out batch is retried before the next batch goes.
    let server = ScriptedServer::new([common::Step::Hang]);
    let client = builder(&server)
        .batch_size(5)
        .request_timeout(Duration::from_secs(10))
        .retry_policy(courier_impls::retry::FixedDelay::new(
            Duration::from_millis(1),
        ))
        .build()
        .expect("client");
    for seq in 0..10 {
        client.track(numbered(seq)).expect("tracked");
    }
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(server.requests(), 1, "one request in flight");
    assert_eq!(client.stats().queued, 10);
    client.flush().await.expect("flushed");
    let seqs: Vec<Vec<i64>> = server.seen().iter().map(|s| s.seqs()).collect();
    assert_eq!(
        seqs,
        [
            vec![0, 1, 2, 3, 4],
            vec![0, 1, 2, 3, 4],
            vec![5, 6, 7, 8, 9]
        ],
        "the timed-out batch is retried before the next one"
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i14_flush_covers_every_track_that_returned_before_it_under_concurrent_tracks() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};

    const THREADS: usize = 4;
    const PER_THREAD: i64 = 5_000;
    let server = ScriptedServer::new([]);
    let client = Arc::new(
        builder(&server)
            .batch_size(100)
            .queue_capacity(THREADS * PER_THREAD as usize)
            .build()
            .expect("client"),
    );
    let returned: Arc<Vec<AtomicI64>> = Arc::new((0..THREADS).map(|_| AtomicI64::new(0)).collect());
    let trackers: Vec<_> = (0..THREADS)
        .map(|t| {
            let client = Arc::clone(&client);
            let returned = Arc::clone(&returned);
            std::thread::spawn(move || {
                for seq in 0..PER_THREAD {
                    let event = numbered(seq).param("thread", t as i64);
                    client.track(event).expect("tracked");
                    returned[t].store(seq + 1, Ordering::Release);
                }
            })
        })
        .collect();
    // Flush repeatedly while the threads track; each flush must cover what had returned.
    for _ in 0..20 {
        let before: Vec<i64> = returned.iter().map(|r| r.load(Ordering::Acquire)).collect();
        tokio::time::timeout(Duration::from_secs(30), client.flush())
            .await
            .expect("flush in time")
            .expect("flushed");
        let mut delivered = [0i64; THREADS];
        for request in server.seen() {
            for event in &request.events {
                let params = &event["custom_event"]["int_params"];
                let (t, seq) = (params["thread"].as_i64(), params["seq"].as_i64());
                if let (Some(t), Some(seq)) = (t, seq) {
                    let slot = &mut delivered[t as usize];
                    // Each thread's events arrive in its order.
                    assert_eq!(seq, *slot, "thread {t} out of order");
                    *slot += 1;
                }
            }
        }
        for t in 0..THREADS {
            assert!(
                delivered[t] >= before[t],
                "thread {t}: {} < {}",
                delivered[t],
                before[t]
            );
        }
    }
    for tracker in trackers {
        tracker.join().expect("tracker");
    }
    let report = client.close().await;
    assert_eq!(report.delivered, THREADS as u64 * PER_THREAD as u64);
}
