//! I16: `close` against a dead server returns within the shutdown timeout (+ 1 s) with the
//! unsent count; `track` afterwards is refused; `close` is idempotent; dropping a client
//! stops its worker.

mod common;
mod log_capture;

use std::sync::Arc;
use std::time::Duration;

use common::{ScriptedServer, Step, builder, numbered, settle};
use courier_ingest::sdk::{FlushError, TrackError};
use log_capture::Logs;
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn i16_close_with_a_dead_server_returns_within_the_timeout_with_the_unsent_count() {
    let server = ScriptedServer::dead();
    let shutdown = Duration::from_secs(5);
    let client = builder(&server)
        .batch_size(50)
        .request_timeout(Duration::from_secs(10))
        .shutdown_timeout(shutdown)
        .build()
        .expect("client");
    for seq in 0..120 {
        client.track(numbered(seq)).expect("tracked");
    }
    settle().await;
    let start = Instant::now();
    let report = client.close().await;
    // The spec allows 1 s past the timeout; the worker itself stops at the timeout (close's
    // own fallback, 500 ms later, is only for a worker that cannot stop).
    let took = Instant::now() - start;
    assert!(took <= shutdown + Duration::from_millis(100), "{took:?}");
    assert_eq!(
        (report.delivered, report.failed, report.unsent),
        (0, 0, 120)
    );
    assert!(matches!(
        client.track(numbered(120)),
        Err(TrackError::Closed)
    ));
    let stats = client.stats();
    assert_eq!(
        (stats.dropped.closed, stats.queued, stats.unsent),
        (1, 0, 120)
    );
    assert!(matches!(client.flush().await, Err(FlushError::Closed)));
    assert_eq!(client.close().await, report, "close is idempotent");
}

#[tokio::test(start_paused = true)]
async fn i16_close_cuts_a_long_retry_after_wait_short() {
    // The server asks for an hour's pause; close must not wait it out.
    let server = ScriptedServer::new([]);
    server.set_rule(|_| Some(Step::retry_after(503, 3_600)));
    let shutdown = Duration::from_secs(2);
    let client = builder(&server)
        .shutdown_timeout(shutdown)
        .build()
        .expect("client");
    for seq in 0..3 {
        client.track(numbered(seq)).expect("tracked");
    }
    let start = Instant::now();
    let report = client.close().await;
    assert!(Instant::now() - start <= shutdown + Duration::from_secs(1));
    assert_eq!(report.unsent, 3);
    assert_eq!(server.requests(), 1);
}

#[tokio::test(start_paused = true)]
async fn close_delivers_everything_queued_when_the_server_answers() {
    let server = ScriptedServer::new([Step::status(500)]);
    let client = builder(&server)
        .batch_size(10)
        .flush_interval(Duration::from_secs(3_600))
        .build()
        .expect("client");
    for seq in 0..35 {
        client.track(numbered(seq)).expect("tracked");
    }
    let report = client.close().await;
    assert_eq!((report.delivered, report.unsent, report.failed), (35, 0, 0));
    let mut seqs: Vec<i64> = server
        .seen()
        .iter()
        .skip(1)
        .flat_map(|s| s.seqs())
        .collect();
    seqs.dedup();
    assert_eq!(seqs, (0..35).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn concurrent_closes_get_the_same_report() {
    let server = ScriptedServer::new([]);
    let client = Arc::new(builder(&server).build().expect("client"));
    client.track(numbered(0)).expect("tracked");
    let other = Arc::clone(&client);
    let (a, b) = tokio::join!(client.close(), other.close());
    assert_eq!(a, b);
    assert_eq!(a.delivered, 1);
    settle().await;
    assert_eq!(Arc::strong_count(&server), 1, "the worker ended with close");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_client_stops_its_worker() {
    let server = ScriptedServer::dead();
    let client = builder(&server).batch_size(1).build().expect("client");
    client.track(numbered(0)).expect("tracked");
    client.track(numbered(1)).expect("tracked");
    settle().await;
    assert_eq!(server.requests(), 1);
    // The worker and its in-flight request hold the transport; both go with the client.
    assert!(Arc::strong_count(&server) > 1);
    drop(client);
    settle().await;
    assert_eq!(
        Arc::strong_count(&server),
        1,
        "the worker released the transport"
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(server.requests(), 1, "nothing sent after the drop");
}

#[tokio::test(start_paused = true)]
async fn dropping_without_close_warns_with_the_unsent_count() {
    let logs = Logs::default();
    let _guard = logs.capture(tracing::Level::INFO);
    let server = ScriptedServer::dead();
    let client = builder(&server).batch_size(5).build().expect("client");
    for seq in 0..7 {
        client.track(numbered(seq)).expect("tracked");
    }
    settle().await;
    drop(client);
    settle().await;
    let text = logs.text();
    assert!(
        text.contains("dropped without close") && text.contains("unsent=7"),
        "{text}"
    );
}
