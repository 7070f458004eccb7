//! Two `courier streams` processes on one Redis and on one Postgres (testkit servers,
//! loopback): what the official suite cannot see because it talks to one URL.
//!
//! - a long-poll reader on one node is woken by an append on the other within [`WAKE_BOUND`];
//! - an SSE reader on one node gets an append made on the other within [`WAKE_BOUND`];
//! - an ETag from one node answers `304` on the other, and stops matching once either node
//!   appends;
//! - an idempotent producer whose retry lands on the other node is answered `204` duplicate and
//!   writes nothing twice, and its next sequence number is accepted there.

use std::path::Path;
use std::time::Duration;

use courier::impls::http::HttpTransport;
use courier::streams::client::{CreateOptions, LiveMode, StreamsClient};
use courier::traits::transport::{Method, Request, RequestTransport, Response};
use courier_testkit::fixtures::{Postgres, Redis};
use futures::StreamExt;
use tokio::time::Instant;

#[path = "checker/service.rs"]
#[allow(dead_code)]
mod service;
use service::Service;

/// A reader on one node sees an append on the other within this. Generous on purpose: the
/// test shows a wake-up crosses nodes, on a loaded CI machine; a missed wake-up would only be
/// noticed at the long-poll timeout, which is far beyond it.
const WAKE_BOUND: Duration = Duration::from_secs(2);
/// The long-poll timeout of both nodes: well above [`WAKE_BOUND`], so an answer within the
/// bound is a wake-up, not a timeout.
const LONG_POLL: &str = "10s";
/// Every request of the test ends by then.
const REQUEST_LIMIT: Duration = Duration::from_secs(20);

/// Two nodes on one storage URL, each with its own log file in `dir`.
async fn two_nodes(storage: &str, dir: &Path) -> (Service, Service) {
    let start = |n: usize| {
        let log = dir.join(format!("node{n}.log"));
        let args = [
            "streams",
            "--storage",
            storage,
            "--long-poll-timeout",
            LONG_POLL,
        ];
        async move { Service::start(&args, &[], &log).await }
    };
    let a = start(1).await;
    let b = start(2).await;
    (a, b)
}

fn http(node: &Service) -> HttpTransport {
    HttpTransport::new(&format!("http://{}", node.addr()))
        .expect("transport")
        .with_timeout(REQUEST_LIMIT)
}

fn client(node: &Service) -> StreamsClient {
    StreamsClient::http(&format!("http://{}", node.addr())).expect("client")
}

async fn body(response: Response) -> String {
    let bytes = response.body.collect(1 << 20).await.expect("body");
    String::from_utf8(bytes.to_vec()).expect("utf-8 body")
}

/// `POST` of `data` to `path` on `node`, as an idempotent producer when `stamp` is given.
async fn post(node: &HttpTransport, path: &str, data: &str, stamp: Option<(u64, u64)>) -> Response {
    let mut request = Request::new(Method::Post, path)
        .header("content-type", "text/plain")
        .body(data.to_owned());
    if let Some((epoch, seq)) = stamp {
        request = request
            .header("producer-id", "orders-writer")
            .header("producer-epoch", epoch.to_string())
            .header("producer-seq", seq.to_string());
    }
    node.send(request).await.expect("POST answered")
}

async fn create(node: &Service, stream: &str) {
    client(node)
        .create(stream, CreateOptions::content_type("text/plain"))
        .await
        .expect("create");
}

async fn stream_text(node: &HttpTransport, path: &str) -> String {
    let response = node
        .send(Request::new(Method::Get, format!("{path}?offset=-1")))
        .await
        .expect("GET answered");
    assert_eq!(response.status, 200, "catch-up read of {path}");
    body(response).await
}

/// A long-poll on `b` at the tail, then an append on `a`: `b` answers with the data well
/// before its own timeout.
async fn long_poll_woken_across_nodes(a: &Service, b: &Service) {
    let path = "/v1/stream/nodes-long-poll";
    create(a, "nodes-long-poll").await;
    let tail = post(&http(a), path, "first", None).await;
    assert_eq!(tail.status, 204, "first append");
    let offset = tail
        .header("stream-next-offset")
        .expect("next offset")
        .to_owned();

    let reader = http(b);
    let poll = tokio::spawn(async move {
        let started = Instant::now();
        let response = reader
            .send(Request::new(
                Method::Get,
                format!("{path}?offset={offset}&live=long-poll"),
            ))
            .await
            .expect("long-poll answered");
        (started.elapsed(), response.status, body(response).await)
    });
    // Real processes: nothing to observe the park by, so give the long-poll time to reach node
    // b and check it is still waiting (the append below must be a wake-up, not a catch-up read).
    // A second is far more than a loopback request takes, even on a loaded machine; with
    // wake-ups across nodes broken the poll would then answer only at its 10 s timeout.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !poll.is_finished(),
        "node b answered the long-poll before any append"
    );
    let appended = Instant::now();
    assert_eq!(post(&http(a), path, "second", None).await.status, 204);
    let (waited, status, data) = tokio::time::timeout(REQUEST_LIMIT, poll)
        .await
        .expect("long-poll ends")
        .expect("long-poll task");
    let woken_after = appended.elapsed();
    assert_eq!(status, 200, "long-poll on node b answered {status}: {data}");
    assert_eq!(data, "second");
    assert!(
        woken_after < WAKE_BOUND,
        "node b's long-poll answered {woken_after:?} after node a's append (bound {WAKE_BOUND:?}; it waited {waited:?} in all)"
    );
    eprintln!("long-poll on node b woken {woken_after:?} after the append on node a");
}

/// An SSE reader on `b`, then appends on `a`: each reaches the reader within the bound.
async fn sse_woken_across_nodes(a: &Service, b: &Service) {
    create(a, "nodes-sse").await;
    let mut subscription = client(b).subscribe("nodes-sse", None, LiveMode::Sse);
    let writer = client(a);
    for n in 0..3 {
        let data = format!("event-{n}");
        let appended = Instant::now();
        writer
            .append("nodes-sse", "text/plain", data.clone().into_bytes())
            .await
            .expect("append on node a");
        let mut seen = String::new();
        while seen != data {
            let chunk = tokio::time::timeout(WAKE_BOUND, subscription.next())
                .await
                .unwrap_or_else(|_| {
                    panic!("SSE on node b: nothing within {WAKE_BOUND:?} of append {n} on node a")
                })
                .expect("subscription open")
                .expect("chunk");
            seen.push_str(std::str::from_utf8(&chunk.data).expect("utf-8"));
        }
        eprintln!(
            "SSE on node b got append {n} of node a after {:?}",
            appended.elapsed()
        );
    }
}

/// An ETag from `a` matches on `b` (304), and no longer does after an append on `b`.
async fn etag_across_nodes(a: &Service, b: &Service) {
    let path = "/v1/stream/nodes-etag";
    create(a, "nodes-etag").await;
    assert_eq!(post(&http(a), path, "one", None).await.status, 204);
    let read = |node: &Service, etag: Option<String>| {
        let transport = http(node);
        async move {
            let mut request = Request::new(Method::Get, format!("{path}?offset=-1"));
            if let Some(etag) = etag {
                request = request.header("if-none-match", etag);
            }
            transport.send(request).await.expect("GET answered")
        }
    };
    let first = read(a, None).await;
    assert_eq!(first.status, 200);
    let etag = first.header("etag").expect("ETag on GET").to_owned();

    let revalidated = read(b, Some(etag.clone())).await;
    assert_eq!(
        revalidated.status, 304,
        "node b, If-None-Match with node a's ETag"
    );
    assert_eq!(body(revalidated).await, "", "a 304 has no body");

    assert_eq!(post(&http(b), path, "two", None).await.status, 204);
    let changed = read(a, Some(etag.clone())).await;
    assert_eq!(changed.status, 200, "node a, after node b appended");
    let new_etag = changed.header("etag").expect("ETag").to_owned();
    assert_ne!(new_etag, etag, "the ETag changes with the data");
    assert_eq!(body(changed).await, "onetwo");
    assert_eq!(
        read(b, Some(new_etag)).await.status,
        304,
        "node b, the new ETag"
    );
}

/// A producer's append on `a` whose retry (same epoch and seq) lands on `b`: `204` duplicate,
/// nothing written twice; its next seq on `b` is accepted; a gap is refused on either node.
async fn idempotent_retry_on_other_node(a: &Service, b: &Service) {
    let path = "/v1/stream/nodes-producer";
    create(a, "nodes-producer").await;
    let (on_a, on_b) = (http(a), http(b));

    let accepted = post(&on_a, path, "order-0;", Some((1, 0))).await;
    assert_eq!(accepted.status, 200, "seq 0 on node a");
    let retried = post(&on_b, path, "order-0;", Some((1, 0))).await;
    assert_eq!(
        retried.status, 204,
        "the retry of seq 0 on node b is a duplicate"
    );
    assert_eq!(retried.header("producer-seq"), Some("0"));
    assert_eq!(retried.header("producer-epoch"), Some("1"));

    assert_eq!(
        post(&on_b, path, "order-1;", Some((1, 1))).await.status,
        200,
        "seq 1 on node b"
    );
    assert_eq!(
        post(&on_a, path, "order-1;", Some((1, 1))).await.status,
        204,
        "its retry on a"
    );
    let gap = post(&on_a, path, "order-3;", Some((1, 3))).await;
    assert_eq!(gap.status, 409, "seq 3 after 1 is a gap on node a");
    assert_eq!(gap.header("producer-expected-seq"), Some("2"));
    let stale = post(&on_b, path, "old;", Some((0, 0))).await;
    assert_eq!(stale.status, 403, "an older epoch is fenced on node b");

    assert_eq!(stream_text(&on_b, path).await, "order-0;order-1;");
    assert_eq!(stream_text(&on_a, path).await, "order-0;order-1;");
}

async fn cross_node_cases(storage: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut a, mut b) = two_nodes(storage, dir.path()).await;
    long_poll_woken_across_nodes(&a, &b).await;
    sse_woken_across_nodes(&a, &b).await;
    etag_across_nodes(&a, &b).await;
    idempotent_retry_on_other_node(&a, &b).await;
    assert!(a.stop().await, "node a stops on SIGTERM");
    assert!(b.stop().await, "node b stops on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_redis() {
    let redis = Redis::start().await.expect("redis");
    cross_node_cases(&redis.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_postgres() {
    let postgres = Postgres::start().await.expect("postgres");
    cross_node_cases(&postgres.url()).await;
}
