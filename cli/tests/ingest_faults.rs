//! The Rust SDK against a real `courier ingest` through a fault-injecting proxy (spec cases I11
//! and I17): an answer held past the client's timeout is retried and stored once; 10 000 events
//! through a seeded schedule of 5xx, resets and delays arrive once each. The retries of batches
//! the server had stored are caught by the storage's keyed append, so each case runs on SQLite
//! and on real Redis and Postgres (a schema of its own on the run's shared server).

#[path = "ingest/fault_proxy.rs"]
mod fault_proxy;
#[path = "ingest/node.rs"]
mod node;

use std::time::Duration;

use courier::impls::retry::ExponentialBackoff;
use courier::ingest::sdk::{CloseReport, Event, IngestClient, Stats};
use courier_testkit::fixtures::{Postgres, Redis};
use fault_proxy::{Fault, FaultProxy, seeded_schedule};
use node::{APP, IngestNode, KEY, Steps, copies_by_key, stored_events};

/// The `seq` int param the tests put in each event.
fn seq_of(record: &serde_json::Value) -> u64 {
    let seq = &record["custom_event"]["int_params"]["seq"];
    seq.as_u64()
        .or_else(|| seq.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("record without seq: {record}"))
}

/// Asserts the stream holds seq `0..n` once each, and no key twice.
fn assert_each_seq_once(records: &[serde_json::Value], n: u64) {
    let mut seen = vec![0u32; usize::try_from(n).expect("n fits")];
    for record in records {
        let seq = seq_of(record);
        let slot = seen
            .get_mut(usize::try_from(seq).expect("seq fits"))
            .unwrap_or_else(|| panic!("seq {seq} out of range"));
        *slot += 1;
    }
    let missing: Vec<usize> = (0..seen.len()).filter(|&i| seen[i] == 0).collect();
    let doubled: Vec<usize> = (0..seen.len()).filter(|&i| seen[i] > 1).collect();
    assert!(
        missing.is_empty() && doubled.is_empty(),
        "missing {} (first {:?}), stored more than once {} (first {:?})",
        missing.len(),
        missing.first(),
        doubled.len(),
        doubled.first()
    );
    assert_eq!(records.len() as u64, n);
    assert!(copies_by_key(records).values().all(|&c| c == 1));
}

/// Tracks `n` events named `name` with `seq` 0..n (the queue must hold them all), flushes and
/// closes; the close report and the final stats.
async fn track_flush_close(client: &IngestClient, name: &str, n: u64) -> (CloseReport, Stats) {
    for seq in 0..n {
        let seq = i64::try_from(seq).expect("seq fits");
        client
            .track(Event::custom(name).param("seq", seq))
            .expect("track: the queue has room");
    }
    client.flush().await.expect("flush");
    let report = client.close().await;
    (report, client.stats())
}

/// The storage a case runs on, kept alive for the case: its `--storage` value and what backs it.
struct Storage {
    spec: String,
    dir: tempfile::TempDir,
    _server: Option<Box<dyn std::any::Any>>,
}

impl Storage {
    async fn sqlite() -> Storage {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = format!("sqlite:{}", dir.path().join("ingest.db").display());
        Storage {
            spec,
            dir,
            _server: None,
        }
    }

    async fn redis() -> Storage {
        let redis = Redis::start().await.expect("redis fixture");
        Storage {
            spec: redis.url(),
            dir: tempfile::tempdir().expect("tempdir"),
            _server: Some(Box::new(redis)),
        }
    }

    async fn postgres() -> Storage {
        let postgres = Postgres::shared().await.expect("postgres fixture");
        Storage {
            spec: node::postgres_spec(&postgres.url()).await,
            dir: tempfile::tempdir().expect("tempdir"),
            _server: Some(Box::new(postgres)),
        }
    }

    /// A `courier ingest` process on this storage, logging into the case's directory.
    async fn node(&self) -> IngestNode {
        IngestNode::start(&self.spec, self.dir.path()).await
    }
}

fn client(endpoint: &str, timeout: Duration, batch_size: usize) -> IngestClient {
    IngestClient::builder(endpoint, KEY, APP)
        .batch_size(batch_size)
        .request_timeout(timeout)
        .retry_policy(
            ExponentialBackoff::new(Duration::from_millis(5))
                .cap(Duration::from_millis(50))
                .seeded(17),
        )
        .max_retries(40)
        .shutdown_timeout(Duration::from_secs(10))
        .build()
        .expect("client builds")
}

/// One `#[tokio::test]` per storage running `$case(Storage::$storage().await)`.
macro_rules! on_each_storage {
    ($case:ident: $($test:ident = $storage:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                $case(Storage::$storage().await).await;
            }
        )+
    };
}

on_each_storage!(answer_past_the_client_timeout_is_retried_and_stored_once:
    i11_an_answer_past_the_client_timeout_is_retried_and_stored_once_on_sqlite = sqlite,
    i11_an_answer_past_the_client_timeout_is_retried_and_stored_once_on_redis = redis,
    i11_an_answer_past_the_client_timeout_is_retried_and_stored_once_on_postgres = postgres,
);

async fn answer_past_the_client_timeout_is_retried_and_stored_once(storage: Storage) {
    let steps = Steps::start();
    let server = storage.node().await;
    // The first request reaches the server, which stores it; its answer is held 1 s, past the
    // client's 500 ms timeout. Every later request passes.
    let mut first = true;
    let schedule = Box::new(move || {
        if std::mem::take(&mut first) {
            Fault::Delay(Duration::from_secs(1))
        } else {
            Fault::Pass
        }
    });
    let proxy = FaultProxy::start(&server.url(), schedule).await;
    let client = client(&proxy.url(), Duration::from_millis(500), 50);
    const EVENTS: u64 = 20;
    let (report, stats) = track_flush_close(&client, "i11", EVENTS).await;
    steps.step(&format!("delivered; {stats:?}; proxy {:?}", proxy.log()));
    assert_eq!(report.delivered, EVENTS);
    assert_eq!((stats.sent, stats.failed, stats.unsent), (EVENTS, 0, 0));
    assert!(stats.retries >= 1, "the timed-out request was retried");
    assert_eq!(proxy.log().get("delay"), Some(&1));
    assert!(proxy.log().get("pass").copied().unwrap_or(0) >= 1);
    // The held request was stored, so its retry found every event stored already (at least
    // once: on a loaded machine a retry may time out too, after storing nothing new).
    assert_eq!(server.metric(STORED).await, Some(EVENTS as f64));
    let duplicates = server.metric(DUPLICATES).await;
    assert!(
        duplicates.is_some_and(|d| d >= EVENTS as f64),
        "{duplicates:?}"
    );
    assert_each_seq_once(&stored_events(&storage.spec, APP).await, EVENTS);
    steps.step("done");
}

/// Events the server stored, and events it found stored already.
const STORED: &str = r#"courier_ingest_events_total{outcome="accepted"}"#;
const DUPLICATES: &str = r#"courier_ingest_events_total{outcome="duplicate"}"#;

on_each_storage!(ten_thousand_events_through_a_fault_proxy_arrive_once_each:
    i17_ten_thousand_events_through_a_fault_proxy_arrive_once_each_on_sqlite = sqlite,
    i17_ten_thousand_events_through_a_fault_proxy_arrive_once_each_on_redis = redis,
    i17_ten_thousand_events_through_a_fault_proxy_arrive_once_each_on_postgres = postgres,
);

async fn ten_thousand_events_through_a_fault_proxy_arrive_once_each(storage: Storage) {
    let steps = Steps::start();
    let server = storage.node().await;
    // Per request: pass 55, 503 12, 500 5, reset before forwarding 10, reset after the server
    // stored it 10, a delay under the timeout 6, a delay past it 2 (weights).
    let schedule = seeded_schedule(
        0x1717,
        [55, 12, 5, 10, 10, 6, 2],
        (Duration::from_millis(5), Duration::from_millis(80)),
        Duration::from_millis(600),
    );
    let proxy = FaultProxy::start(&server.url(), schedule).await;
    // Batches of 100 (the default is 50) keep the run near 10 s on a loaded debug build.
    let client = client(&proxy.url(), Duration::from_millis(500), 100);
    const EVENTS: u64 = 10_000;
    steps.step("track 10 000 events");
    let (report, stats) = track_flush_close(&client, "i17", EVENTS).await;
    let faults = proxy.log();
    steps.step(&format!("delivered; {stats:?}; proxy {faults:?}"));
    assert_eq!(report.delivered, EVENTS);
    assert_eq!(stats.sent, EVENTS);
    assert_eq!((stats.failed, stats.unsent, stats.rejected), (0, 0, 0));
    // Every kind of fault happened, so each was survived.
    for kind in ["status", "reset_before", "reset_after", "delay"] {
        assert!(
            faults.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} fault: {faults:?}"
        );
    }
    // Answers lost after the server stored them (resets after, delays past the timeout)
    // came back as duplicates, and nothing was stored twice.
    assert_eq!(server.metric(STORED).await, Some(EVENTS as f64));
    assert!(server.metric(DUPLICATES).await.is_some_and(|d| d > 0.0));
    assert_each_seq_once(&stored_events(&storage.spec, APP).await, EVENTS);
    steps.step("done");
}
