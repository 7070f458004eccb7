//! `courier streams` on SQLite, and on the embedded log with every full chunk spilled to files,
//! killed with SIGKILL under concurrent append load, then started again on the same storage:
//! every append the client saw acknowledged (204) reads back, in the order each writer made
//! them, none twice. An append in flight at the kill was never answered:
//! it may or may not be there, but only as that writer's last, and only once.

#[path = "checker/service.rs"]
#[allow(dead_code)]
mod service;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use courier::impls::http::HttpTransport;
use courier::traits::transport::{Method, Request, RequestTransport};
use service::Service;
use tokio::time::Instant;

/// Writers appending at the same time, each one append after the other.
const WRITERS: usize = 8;
/// Appends acknowledged before the kill, so that it lands mid-load.
const ACKED_BEFORE_KILL: usize = 300;
/// Every request, and every wait of the test, ends by then.
const LIMIT: Duration = Duration::from_secs(30);
const PATH: &str = "/v1/stream/crash";

/// What one writer saw: the sequence numbers acknowledged, in order, and the one whose request
/// failed (the kill cut it off: outcome unknown).
#[derive(Default)]
struct Writes {
    acked: Vec<u64>,
    unanswered: Option<u64>,
}

fn http(node: &Service) -> HttpTransport {
    HttpTransport::new(&format!("http://{}", node.addr()))
        .expect("transport")
        .with_timeout(LIMIT)
}

/// Appends `{"w":writer,"i":0,1,2,...}` one after the other until an append fails or `stop` is
/// set (checked before each append).
async fn write(
    node: HttpTransport,
    writer: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
) -> Writes {
    let mut writes = Writes::default();
    for i in 0.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let request = Request::new(Method::Post, PATH)
            .header("content-type", "application/json")
            .body(format!(r#"{{"w":{writer},"i":{i}}}"#));
        match node.send(request).await {
            Ok(response) if response.status == 204 => {
                writes.acked.push(i);
                acked.fetch_add(1, Ordering::SeqCst);
            }
            Ok(response) => panic!("writer {writer}: append {i} answered {}", response.status),
            Err(_) => {
                writes.unanswered = Some(i);
                break;
            }
        }
    }
    writes
}

/// The whole stream: the sequence numbers of each writer in stream order.
async fn read_back(node: &HttpTransport) -> HashMap<u64, Vec<u64>> {
    let mut offset = String::from("-1");
    let mut found: HashMap<u64, Vec<u64>> = HashMap::new();
    let deadline = Instant::now() + LIMIT;
    loop {
        assert!(
            Instant::now() < deadline,
            "reading back took over {LIMIT:?}"
        );
        let response = node
            .send(Request::new(Method::Get, format!("{PATH}?offset={offset}")))
            .await
            .expect("GET answered");
        assert_eq!(response.status, 200, "catch-up read from {offset}");
        let next = response
            .header("stream-next-offset")
            .expect("next offset")
            .to_owned();
        let up_to_date = response.header("stream-up-to-date") == Some("true");
        let body = response.body.collect(64 << 20).await.expect("body");
        let records: Vec<serde_json::Value> = serde_json::from_slice(&body).expect("JSON array");
        for record in records {
            let (Some(w), Some(i)) = (record["w"].as_u64(), record["i"].as_u64()) else {
                panic!("unexpected record {record}");
            };
            found.entry(w).or_default().push(i);
        }
        if up_to_date {
            return found;
        }
        offset = next;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_kill_9_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = format!("sqlite:{}", dir.path().join("streams.db").display());
    kill_9_under_load(&storage, dir.path()).await;
}

/// A budget of 0: the records read back after the restart come from spill files written while
/// the journal was applied again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_kill_9_on_the_log_spilling_every_full_chunk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = format!("log:{}?resident=0", dir.path().join("streams").display());
    kill_9_under_load(&storage, dir.path()).await;
}

async fn kill_9_under_load(storage: &str, dir: &std::path::Path) {
    let mut node = Service::start(
        &["streams", "--storage", storage],
        &[("COURIER_LOG", "warn")],
        &dir.join("node.log"),
    )
    .await;
    let created = http(&node)
        .send(Request::new(Method::Put, PATH).header("content-type", "application/json"))
        .await
        .expect("PUT answered");
    assert_eq!(created.status, 201, "create");

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(write(http(&node), w, stop.clone(), acked.clone())))
        .collect();
    let deadline = Instant::now() + LIMIT;
    while acked.load(Ordering::SeqCst) < ACKED_BEFORE_KILL {
        assert!(
            Instant::now() < deadline,
            "only {} appends acknowledged in {LIMIT:?}",
            acked.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The writers keep appending into the kill, so it lands mid-load: each one ends on its first
    // failed append. (Stopping them first let every append in flight finish before the kill on a
    // fast run, and then no append was cut off.)
    node.kill_and_restart(Duration::from_millis(300))
        .await
        .expect("restart on the same file");
    // A writer whose append somehow reached the restarted node would append on; stop it there.
    stop.store(true, Ordering::SeqCst);
    let mut writes = Vec::new();
    for writer in writers {
        writes.push(
            tokio::time::timeout(LIMIT, writer)
                .await
                .expect("writer ends")
                .expect("writer task"),
        );
    }
    let cut_off = writes.iter().filter(|w| w.unanswered.is_some()).count();
    assert!(cut_off > 0, "no append was in flight at the kill");

    let stored = read_back(&http(&node)).await;
    let mut total = 0;
    for (w, writes) in writes.iter().enumerate() {
        let got = stored.get(&(w as u64)).cloned().unwrap_or_default();
        total += got.len();
        // Sequential appends by one writer: acknowledged ones are 0..n, then at most the one
        // cut off by the kill.
        let n = writes.acked.len() as u64;
        assert_eq!(writes.acked, (0..n).collect::<Vec<_>>(), "writer {w} acked");
        let mut allowed = vec![(0..n).collect::<Vec<_>>()];
        if let Some(i) = writes.unanswered {
            allowed.push((0..=i).collect());
        }
        assert!(
            allowed.contains(&got),
            "writer {w}: stored {} records {:?}.., acked 0..{n}, unanswered {:?}",
            got.len(),
            &got[got.len().saturating_sub(5)..],
            writes.unanswered
        );
    }
    eprintln!(
        "{storage}: {} appends acknowledged, {cut_off} cut off by the kill, {total} stored",
        writes.iter().map(|w| w.acked.len()).sum::<usize>()
    );
    // The restarted node takes appends after what survived.
    let after = http(&node)
        .send(
            Request::new(Method::Post, PATH)
                .header("content-type", "application/json")
                .body(r#"{"w":99,"i":0}"#),
        )
        .await
        .expect("POST answered");
    assert_eq!(after.status, 204, "append after the restart");
    assert!(node.stop().await, "clean exit on SIGTERM");
}
