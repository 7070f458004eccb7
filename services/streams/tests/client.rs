//! The client against the real server over loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use courier_impls::http::HttpTransport;
use courier_impls::memory::MemoryStreamStorage;
use courier_impls::retry::FixedDelay;
use courier_impls::sqlite::{SqliteStorageConfig, SqliteStreamStorage};
use courier_streams::client::{ClientError, CreateOptions, LiveMode, StreamsClient};
use courier_streams::server::{ServerConfig, StreamsServer};
use courier_traits::StreamStorage;
use courier_traits::transport::{Method, Request, RequestTransport, Response, TransportError};
use futures::StreamExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Every test is bounded in time.
const LIMIT: Duration = Duration::from_secs(30);

struct TestServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    /// A server on `addr` (port 0 = any free loopback port) with a short long-poll timeout.
    async fn start(storage: Arc<dyn StreamStorage>, addr: &str) -> TestServer {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let config = ServerConfig {
            long_poll_timeout: Duration::from_millis(300),
            ..ServerConfig::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let server = StreamsServer::new(storage, config);
        let task = tokio::spawn(server.serve(listener, async move {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            stop: Some(stop),
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn client(url: &str) -> StreamsClient {
    StreamsClient::http(url)
        .expect("valid url")
        .with_retry(FixedDelay::new(Duration::from_millis(50)).max_elapsed(Duration::from_secs(20)))
}

async fn memory_server() -> TestServer {
    TestServer::start(Arc::new(MemoryStreamStorage::new()), "127.0.0.1:0").await
}

#[tokio::test]
async fn crud_round_trip() {
    let server = memory_server().await;
    let c = client(&server.url());
    tokio::time::timeout(LIMIT, async {
        let created = c
            .create("crud", CreateOptions::content_type("text/plain"))
            .await
            .expect("create");
        assert!(created.created);
        let again = c
            .create("crud", CreateOptions::content_type("text/plain"))
            .await
            .expect("idempotent");
        assert!(!again.created);
        let conflict = c
            .create("crud", CreateOptions::content_type("application/json"))
            .await;
        assert!(
            matches!(conflict, Err(ClientError::Rejected { status: 409, .. })),
            "{conflict:?}"
        );
        let after_a = c.append("crud", "text/plain", "a").await.expect("append");
        c.append("crud", "text/plain", "b").await.expect("append");
        let all = c.read("crud", None).await.expect("read");
        assert_eq!(&all.data[..], b"ab");
        assert!(all.up_to_date && !all.closed);
        let rest = c
            .read("crud", Some(&after_a))
            .await
            .expect("read from offset");
        assert_eq!(&rest.data[..], b"b");
        let final_offset = c.close("crud").await.expect("close");
        let meta = c.head("crud").await.expect("head");
        assert_eq!(
            (meta.content_type.as_str(), meta.closed),
            ("text/plain", true)
        );
        assert_eq!(meta.next_offset, final_offset);
        let refused = c.append("crud", "text/plain", "c").await;
        assert!(
            matches!(refused, Err(ClientError::Closed { .. })),
            "{refused:?}"
        );
        c.delete("crud").await.expect("delete");
        assert!(matches!(
            c.head("crud").await,
            Err(ClientError::NotFound { .. })
        ));
        assert!(matches!(
            c.read("bad name", None).await,
            Err(ClientError::InvalidInput { .. })
        ));
    })
    .await
    .expect("within the time limit");
    server.stop().await;
}

/// Collects a subscription's data until it ends (the stream is closed).
async fn collect_all(c: &StreamsClient, stream: &str, mode: LiveMode) -> Vec<u8> {
    collect_all_reporting(c, stream, mode, &tokio::sync::watch::channel(0).0).await
}

/// [`collect_all`], publishing how many bytes it has received so far on `received`.
async fn collect_all_reporting(
    c: &StreamsClient,
    stream: &str,
    mode: LiveMode,
    received: &tokio::sync::watch::Sender<usize>,
) -> Vec<u8> {
    let mut subscription = c.subscribe(stream, None, mode);
    let mut all = Vec::new();
    while let Some(chunk) = subscription.next().await {
        all.extend_from_slice(&chunk.expect("chunk").data);
        received.send_replace(all.len());
    }
    all
}

fn message(i: usize) -> String {
    format!("message {i:03}\n")
}

#[tokio::test]
async fn subscriptions_catch_up_then_follow_live_appends() {
    let server = memory_server().await;
    let c = client(&server.url());
    for mode in [LiveMode::LongPoll, LiveMode::Sse] {
        let stream = format!("live-{mode:?}");
        c.create(&stream, CreateOptions::content_type("text/plain"))
            .await
            .expect("create");
        for i in 0..10 {
            c.append(&stream, "text/plain", message(i))
                .await
                .expect("append");
        }
        let (received, mut progress) = tokio::sync::watch::channel(0);
        let reader = tokio::spawn({
            let c = c.clone();
            let stream = stream.clone();
            async move { collect_all_reporting(&c, &stream, mode, &received).await }
        });
        for i in 10..40 {
            c.append(&stream, "text/plain", message(i))
                .await
                .expect("append");
            if i % 5 == 0 {
                // The reader has everything so far, so it is following live: the appends
                // that come next reach it as live data, not as part of its catch-up.
                let sent: usize = (0..=i).map(|k| message(k).len()).sum();
                tokio::time::timeout(LIMIT, progress.wait_for(|got| *got >= sent))
                    .await
                    .unwrap_or_else(|_| panic!("{mode:?}: the reader did not catch up"))
                    .expect("reader running");
            }
        }
        c.close(&stream).await.expect("close");
        let got = tokio::time::timeout(LIMIT, reader)
            .await
            .expect("ends")
            .expect("joined");
        let expected: String = (0..40).map(message).collect();
        assert_eq!(String::from_utf8(got).expect("utf8"), expected, "{mode:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn sse_subscription_decodes_binary_and_json_streams() {
    let server = memory_server().await;
    let c = client(&server.url());
    let binary: Vec<u8> = (0..=255u8).collect();
    c.create(
        "bin",
        CreateOptions {
            initial: binary.clone().into(),
            closed: true,
            ..CreateOptions::default()
        },
    )
    .await
    .expect("create");
    assert_eq!(collect_all(&c, "bin", LiveMode::Sse).await, binary);
    c.create("json", CreateOptions::content_type("application/json"))
        .await
        .expect("create");
    c.append("json", "application/json", r#"[{"a":1},"two\n"]"#)
        .await
        .expect("append");
    c.close("json").await.expect("close");
    let json = collect_all(&c, "json", LiveMode::Sse).await;
    let value: serde_json::Value = serde_json::from_slice(&json).expect("one JSON array");
    assert_eq!(value, serde_json::json!([{"a":1},"two\n"]));
    server.stop().await;
}

#[tokio::test]
async fn subscription_resumes_across_a_server_restart_without_gaps_or_duplicates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("streams.db");
    for mode in [LiveMode::LongPoll, LiveMode::Sse] {
        let stream = format!("restart-{mode:?}");
        let storage = SqliteStreamStorage::connect(&db, SqliteStorageConfig::default())
            .await
            .expect("open sqlite");
        let server = TestServer::start(Arc::new(storage), "127.0.0.1:0").await;
        let addr = server.addr;
        let c = client(&server.url());
        c.create(&stream, CreateOptions::content_type("text/plain"))
            .await
            .expect("create");
        let (seen_tx, mut seen_rx) = tokio::sync::mpsc::channel::<usize>(64);
        let reader = tokio::spawn({
            let c = c.clone();
            let stream = stream.clone();
            async move {
                let mut subscription = c.subscribe(&stream, None, mode);
                let mut all = Vec::new();
                while let Some(chunk) = subscription.next().await {
                    all.extend_from_slice(&chunk.expect("chunk survives the restart").data);
                    let _ = seen_tx.send(all.len()).await;
                }
                all
            }
        });
        let first_half: String = (0..20).map(message).collect();
        for i in 0..20 {
            c.append(&stream, "text/plain", message(i))
                .await
                .expect("append");
        }
        // Wait until the subscriber has everything so far, then restart the server.
        tokio::time::timeout(LIMIT, async {
            while seen_rx.recv().await.expect("reader alive") < first_half.len() {}
        })
        .await
        .expect("reader caught up");
        server.stop().await;
        let storage = SqliteStreamStorage::connect(&db, SqliteStorageConfig::default())
            .await
            .expect("reopen sqlite");
        let server = TestServer::start(Arc::new(storage), &addr.to_string()).await;
        for i in 20..40 {
            c.append(&stream, "text/plain", message(i))
                .await
                .expect("append after restart");
        }
        c.close(&stream).await.expect("close");
        let got = tokio::time::timeout(LIMIT, reader)
            .await
            .expect("ends")
            .expect("joined");
        let expected: String = (0..40).map(message).collect();
        assert_eq!(String::from_utf8(got).expect("utf8"), expected, "{mode:?}");
        server.stop().await;
    }
}

/// A transport that loses the response of every other POST (the 1st, 3rd, ...) after the
/// server handled it (as when a connection breaks on the way back), `lose` times in all, and
/// counts POSTs.
struct LossyTransport {
    inner: HttpTransport,
    lose: AtomicUsize,
    posts: AtomicUsize,
}

impl LossyTransport {
    fn new(url: &str, lose: usize) -> Arc<LossyTransport> {
        Arc::new(LossyTransport {
            inner: HttpTransport::new(url).expect("valid url"),
            lose: AtomicUsize::new(lose),
            posts: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl RequestTransport for LossyTransport {
    async fn send(&self, request: Request) -> Result<Response, TransportError> {
        let post = request.method == Method::Post;
        let response = self.inner.send(request).await?;
        if post {
            let n = self.posts.fetch_add(1, Ordering::SeqCst) + 1;
            let lost = n % 2 == 1
                && self
                    .lose
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
            if lost {
                return Err(TransportError::Io(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "response lost (injected)",
                )));
            }
        }
        Ok(response)
    }
}

fn lossy_client(transport: Arc<LossyTransport>) -> StreamsClient {
    StreamsClient::new(transport)
        .with_retry(FixedDelay::new(Duration::from_millis(10)).max_attempts(10))
}

#[tokio::test]
async fn idempotent_producer_retries_never_duplicate() {
    let server = memory_server().await;
    let lossy = LossyTransport::new(&server.url(), 3);
    let c = lossy_client(lossy.clone());
    c.create("once", CreateOptions::content_type("text/plain"))
        .await
        .expect("create");
    let producer = c
        .producer("once", "text/plain")
        .idempotent("writer-1", 0)
        .build();
    let mut duplicates = 0;
    for i in 0..10 {
        let ack = producer
            .append(message(i))
            .await
            .expect("append despite lost responses");
        duplicates += usize::from(ack.duplicate);
        assert_eq!(
            ack.stamp.map(|(_, seq)| seq),
            Some(i as u64),
            "one seq per batch"
        );
    }
    producer.close().await;
    assert_eq!(
        duplicates, 3,
        "each lost response was retried and deduplicated"
    );
    assert_eq!(lossy.posts.load(Ordering::SeqCst), 13);
    let all = c.read("once", None).await.expect("read");
    let expected: String = (0..10).map(message).collect();
    assert_eq!(
        String::from_utf8(all.data.to_vec()).expect("utf8"),
        expected
    );
    server.stop().await;
}

#[tokio::test]
async fn unstamped_appends_are_not_retried_after_a_lost_response() {
    let server = memory_server().await;
    let lossy = LossyTransport::new(&server.url(), 1);
    let c = lossy_client(lossy.clone());
    c.create("plain", CreateOptions::content_type("text/plain"))
        .await
        .expect("create");
    let producer = c.producer("plain", "text/plain").build();
    let lost = producer.append("x").await;
    assert!(
        lost.is_err(),
        "an unstamped append whose response was lost is reported, not retried"
    );
    producer.close().await;
    assert_eq!(lossy.posts.load(Ordering::SeqCst), 1);
    assert_eq!(&c.read("plain", None).await.expect("read").data[..], b"x");
    server.stop().await;
}

#[tokio::test]
async fn fenced_producer_takes_over_with_the_next_epoch_or_reports_it() {
    let server = memory_server().await;
    let c = client(&server.url());
    c.create("fence", CreateOptions::content_type("text/plain"))
        .await
        .expect("create");
    let old = c.producer("fence", "text/plain").idempotent("p", 0).build();
    old.append("a").await.expect("epoch 0");
    let new = c.producer("fence", "text/plain").idempotent("p", 5).build();
    new.append("b").await.expect("epoch 5");
    let ack = old.append("c").await.expect("bumped past the fence");
    assert_eq!(ack.stamp, Some((6, 0)));
    let strict = c
        .producer("fence", "text/plain")
        .idempotent("p", 1)
        .bump_epoch_when_fenced(false)
        .build();
    let fenced = strict.append("d").await;
    assert!(
        matches!(fenced, Err(ClientError::StaleEpoch { current: 6 })),
        "{fenced:?}"
    );
    assert_eq!(&c.read("fence", None).await.expect("read").data[..], b"abc");
    server.stop().await;
}

#[tokio::test]
async fn producer_batches_concurrent_appends() {
    let server = memory_server().await;
    let counting = LossyTransport::new(&server.url(), 0);
    let c = lossy_client(counting.clone());
    c.create("batched", CreateOptions::content_type("application/json"))
        .await
        .expect("create");
    let producer = Arc::new(
        c.producer("batched", "application/json")
            .idempotent("b", 0)
            .build(),
    );
    let appends = (0..200).map(|i| {
        let producer = producer.clone();
        async move { producer.append(format!("{{\"n\":{i}}}")).await }
    });
    let acks = tokio::time::timeout(LIMIT, futures::future::join_all(appends))
        .await
        .expect("in time");
    assert!(acks.iter().all(Result::is_ok));
    let posts = counting.posts.load(Ordering::SeqCst);
    assert!(posts < 200, "200 concurrent appends took {posts} requests");
    let read = c.read("batched", None).await.expect("read");
    let values: Vec<serde_json::Value> = serde_json::from_slice(&read.data).expect("array");
    let mut numbers: Vec<u64> = values.iter().map(|v| v["n"].as_u64().expect("n")).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (0..200).collect::<Vec<u64>>());
    server.stop().await;
}

#[tokio::test]
async fn shutdown_answers_waiting_long_polls_at_once() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    let config = ServerConfig {
        long_poll_timeout: Duration::from_secs(60),
        ..ServerConfig::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let server = StreamsServer::new(Arc::new(MemoryStreamStorage::new()), config);
    let task = tokio::spawn(server.serve(listener, async move {
        let _ = stopped.await;
    }));
    let url = format!("http://{addr}");
    let c = client(&url);
    c.create("idle", CreateOptions::content_type("text/plain"))
        .await
        .expect("create");
    let tail = c.head("idle").await.expect("head").next_offset;
    let http = HttpTransport::new(&url).expect("valid url");
    let mut poll = Request::new(
        Method::Get,
        format!("/v1/stream/idle?offset={tail}&live=long-poll"),
    );
    poll.timeout = Some(Duration::from_secs(90));
    let waiting = tokio::spawn(async move { http.send(poll).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "the poll waits for data");
    let started = std::time::Instant::now();
    let _ = stop.send(());
    let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("answered during shutdown, not after the 60 s poll timeout")
        .expect("joined")
        .expect("a response, not a dropped connection");
    assert_eq!(answer.status, 204);
    assert_eq!(answer.header("stream-next-offset"), Some(tail.as_str()));
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("server stopped")
        .expect("joined")
        .expect("clean stop");
    assert!(started.elapsed() < Duration::from_secs(5));
}
