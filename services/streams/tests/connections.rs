//! The server's HTTP/1.1 connections over loopback TCP, written byte by byte: kept alive,
//! pipelined, split at any byte, handed from the server's own loop to hyper mid-connection,
//! and closed on shutdown. Reads and appends are answered by the loop; everything else by
//! hyper; the answers must not tell them apart.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use courier_impls::memory::MemoryStreamStorage;
use courier_streams::server::{ServerConfig, StreamsServer};
use courier_traits::storage::{
    ForwardingStorage, Offset, StorageError, StreamName, StreamStorage, WaitOutcome,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod loopback;
use loopback::server;

/// Every exchange here is bounded by this.
const BOUND: Duration = Duration::from_secs(10);
/// The server's limit on a head's arrival and on a body's silence.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The server's limit on an answer's writes making no progress.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// The bound of exchanges in the tests of that limit, on a paused clock (so it costs nothing).
const PAST_READ_TIMEOUT: Duration = Duration::from_secs(300);

/// One response read off a kept-alive connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// `name: value`, names lower-case, in the order sent.
    headers: Vec<String>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
    }
}

/// A client connection that reads responses one at a time, by their framing.
struct Client {
    tcp: TcpStream,
    unread: Vec<u8>,
    /// How long a read may wait for the server.
    bound: Duration,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client::connect_bounded(addr, BOUND).await
    }

    async fn connect_bounded(addr: SocketAddr, bound: Duration) -> Client {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        Client {
            tcp,
            unread: Vec::new(),
            bound,
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.expect("send");
    }

    /// Sends `bytes` one byte per write, so the server reads heads and bodies in pieces.
    async fn send_bytewise(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.tcp.write_all(&[*byte]).await.expect("send a byte");
        }
    }

    /// Reads until `unread` holds at least `len` bytes; false at the end of the connection.
    async fn fill(&mut self, len: usize) -> bool {
        while self.unread.len() < len {
            let mut chunk = [0u8; 16 << 10];
            let n = tokio::time::timeout(self.bound, self.tcp.read(&mut chunk))
                .await
                .expect("the server answers in time")
                .expect("read");
            if n == 0 {
                return false;
            }
            self.unread.extend_from_slice(&chunk[..n]);
        }
        true
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(end) = self.unread.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8(self.unread[..end].to_vec()).expect("text");
                self.unread.drain(..end + 2);
                return line;
            }
            let want = self.unread.len() + 1;
            assert!(self.fill(want).await, "connection closed mid-response");
        }
    }

    async fn take(&mut self, len: usize) -> Vec<u8> {
        assert!(self.fill(len).await, "connection closed mid-body");
        self.unread.drain(..len).collect()
    }

    /// The next response to a request with method `method`.
    async fn answer(&mut self, method: &str) -> Answer {
        let status_line = self.line().await;
        let status = status_line
            .get(9..12)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not a status line: {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.line().await;
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(": ").expect("a header line");
            headers.push(format!("{}: {value}", name.to_ascii_lowercase()));
        }
        let mut answer = Answer {
            status,
            headers,
            body: Vec::new(),
        };
        if method == "HEAD" || matches!(status, 100..=199 | 204 | 304) {
            return answer;
        }
        if answer.header("transfer-encoding") == Some("chunked") {
            loop {
                let size = usize::from_str_radix(&self.line().await, 16).expect("chunk size");
                if size == 0 {
                    assert_eq!(self.line().await, "", "no trailers");
                    break;
                }
                let data = self.take(size).await;
                answer.body.extend_from_slice(&data);
                assert_eq!(self.line().await, "", "chunk end");
            }
        } else {
            let len: usize = answer
                .header("content-length")
                .unwrap_or_else(|| panic!("a length or chunks: {:?}", answer.headers))
                .parse()
                .expect("a length");
            answer.body = self.take(len).await;
        }
        answer
    }

    /// True once the server has closed the connection (nothing more to read); false once a
    /// byte arrives, which is left unread for [`Client::answer`].
    async fn closed(&mut self) -> bool {
        let len = self.unread.len() + 1;
        !self.fill(len).await
    }
}

fn request(method: &str, path: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: text/plain\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Appends and reads on one connection, one after the other and all written at once: each
/// answer comes back in order, with the records each append stored.
#[tokio::test]
async fn kept_alive_and_pipelined_requests_are_answered_in_order() {
    let server = server().await;
    let mut client = Client::connect(server.addr).await;
    // The create is hyper's, so use a second connection for it.
    let mut creator = Client::connect(server.addr).await;
    creator.send(&request("PUT", "/v1/stream/p", "", b"")).await;
    assert_eq!(creator.answer("PUT").await.status, 201);
    for i in 0..20 {
        client
            .send(&request(
                "POST",
                "/v1/stream/p",
                "",
                format!("<{i}>").as_bytes(),
            ))
            .await;
        let answer = client.answer("POST").await;
        assert_eq!(answer.status, 204, "append {i}: {answer:?}");
    }
    let mut pipelined = Vec::new();
    for body in [&b"[a]"[..], b"[b]", b""] {
        let method = if body.is_empty() { "GET" } else { "POST" };
        pipelined.extend(request(method, "/v1/stream/p?offset=-1", "", body));
    }
    client.send(&pipelined).await;
    let offsets: Vec<String> = [client.answer("POST").await, client.answer("POST").await]
        .iter()
        .map(|a| {
            assert_eq!(a.status, 204, "{a:?}");
            a.header("stream-next-offset")
                .expect("an offset")
                .to_owned()
        })
        .collect();
    assert!(offsets[0] < offsets[1], "{offsets:?}");
    let read = client.answer("GET").await;
    assert_eq!(read.status, 200);
    let expected: String = (0..20).map(|i| format!("<{i}>")).collect::<String>() + "[a][b]";
    assert_eq!(String::from_utf8_lossy(&read.body), expected);
    assert_eq!(read.header("stream-next-offset"), Some(offsets[1].as_str()));
    assert!(read.header("date").is_some(), "{read:?}");
}

/// A request written one byte at a time is read whole: the head and the body arrive in
/// pieces, and a body of several reads is stored byte for byte.
#[tokio::test]
async fn requests_split_at_every_byte_are_read_whole() {
    let server = server().await;
    let mut client = Client::connect(server.addr).await;
    client
        .send_bytewise(&request("PUT", "/v1/stream/s", "", b""))
        .await;
    assert_eq!(client.answer("PUT").await.status, 201);
    // The PUT handed that connection to hyper; a fresh one starts on the server's loop.
    let mut client = Client::connect(server.addr).await;
    let body: Vec<u8> = (0..3000u32).map(|i| b'a' + (i % 26) as u8).collect();
    client
        .send_bytewise(&request("POST", "/v1/stream/s", "", &body))
        .await;
    assert_eq!(client.answer("POST").await.status, 204);
    client
        .send_bytewise(&request("GET", "/v1/stream/s?offset=-1", "", b""))
        .await;
    let read = client.answer("GET").await;
    assert_eq!((read.status, read.body), (200, body));
}

/// A connection that starts on the server's loop and then sends what the loop leaves to
/// hyper (a create, a HEAD, a chunked append, `Connection: close`) gets hyper's answers from
/// there on, the bytes already read included.
#[tokio::test]
async fn a_connection_handed_to_hyper_mid_way_keeps_every_request() {
    let server = server().await;
    let mut creator = Client::connect(server.addr).await;
    creator.send(&request("PUT", "/v1/stream/h", "", b"")).await;
    assert_eq!(creator.answer("PUT").await.status, 201);
    let mut client = Client::connect(server.addr).await;
    // Ours, then a create pipelined behind a read: the loop answers the first two, then hands
    // over with the create already in its buffer.
    let mut bytes = request("POST", "/v1/stream/h", "", b"one;");
    bytes.extend(request("GET", "/v1/stream/h?offset=-1", "", b""));
    bytes.extend(request("PUT", "/v1/stream/h2", "", b""));
    bytes.extend(request("HEAD", "/v1/stream/h", "", b""));
    client.send(&bytes).await;
    assert_eq!(client.answer("POST").await.status, 204);
    assert_eq!(client.answer("GET").await.body, b"one;");
    assert_eq!(client.answer("PUT").await.status, 201);
    let head = client.answer("HEAD").await;
    assert_eq!(head.status, 200, "{head:?}");
    // Chunked, then plain requests, all by hyper now.
    client
        .send(
            b"POST /v1/stream/h HTTP/1.1\r\nHost: test\r\nContent-Type: text/plain\r\n\
              Transfer-Encoding: chunked\r\n\r\n4\r\ntwo;\r\n0\r\n\r\n",
        )
        .await;
    assert_eq!(client.answer("POST").await.status, 204);
    client
        .send(&request(
            "GET",
            "/v1/stream/h?offset=-1",
            "Connection: close\r\n",
            b"",
        ))
        .await;
    let read = client.answer("GET").await;
    assert_eq!(read.body, b"one;two;");
    assert_eq!(read.header("connection"), Some("close"), "{read:?}");
    assert!(client.closed().await, "closed after Connection: close");
}

/// A malformed request on the loop's connection gets hyper's 400, not a dropped connection.
#[tokio::test]
async fn a_malformed_request_gets_hypers_answer() {
    let server = server().await;
    let mut client = Client::connect(server.addr).await;
    client
        .send(b"GET /v1/stream/x HTTP/1.1\r\nBad Header: x\r\n\r\n")
        .await;
    let answer = client.answer("GET").await;
    assert_eq!(answer.status, 400, "{answer:?}");
}

/// Shutdown: an idle kept-alive connection on the server's loop and one handed to hyper are
/// both closed, and `serve` returns. (A long-poll waiting at shutdown is answered at once:
/// `shutdown_answers_waiting_long_polls_at_once` in client.rs.)
#[tokio::test]
async fn shutdown_closes_idle_connections() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = StreamsServer::new(
        Arc::new(MemoryStreamStorage::new()),
        ServerConfig::default(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(listener, async move {
        let _ = stopped.await;
    }));
    let mut hypers = Client::connect(addr).await;
    hypers.send(&request("PUT", "/v1/stream/w", "", b"")).await;
    assert_eq!(hypers.answer("PUT").await.status, 201);
    let mut ours = Client::connect(addr).await;
    ours.send(&request("POST", "/v1/stream/w", "", b"x")).await;
    assert_eq!(ours.answer("POST").await.status, 204);
    stop.send(()).expect("server running");
    assert!(ours.closed().await, "the loop's idle connection is closed");
    assert!(hypers.closed().await, "hyper's idle connection is closed");
    let result = tokio::time::timeout(BOUND, serving)
        .await
        .expect("serve returns in time")
        .expect("serve task");
    assert!(result.is_ok(), "{result:?}");
}

/// A `serve` dropped unfinished (its task aborted) still closes its idle connections and
/// answers its waiting reads: none outlives the server that accepted it.
#[tokio::test]
async fn connections_of_an_aborted_serve_are_closed() {
    let server = loopback::served(ServerConfig {
        long_poll_timeout: Duration::from_secs(600),
        ..ServerConfig::default()
    })
    .await;
    let mut hypers = Client::connect(server.addr).await;
    hypers.send(&request("PUT", "/v1/stream/a", "", b"")).await;
    assert_eq!(hypers.answer("PUT").await.status, 201);
    let mut ours = Client::connect(server.addr).await;
    ours.send(&request("POST", "/v1/stream/a", "", b"x")).await;
    let appended = ours.answer("POST").await;
    assert_eq!(appended.status, 204);
    let tail = appended
        .header("stream-next-offset")
        .expect("offset")
        .to_owned();
    // A long-poll waiting far longer than this test's bound.
    let mut waiting = Client::connect(server.addr).await;
    let path = format!("/v1/stream/a?offset={tail}&live=long-poll");
    waiting.send(&request("GET", &path, "", b"")).await;
    // The test runs on one thread: let the server read the poll before it is dropped.
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
    drop(server);
    assert!(ours.closed().await, "the loop's idle connection is closed");
    assert!(hypers.closed().await, "hyper's idle connection is closed");
    // Answered at once (or, had it not been read yet, closed): not left waiting 600 s.
    if !waiting.closed().await {
        let answer = waiting.answer("GET").await;
        assert_eq!(answer.status, 204, "{answer:?}");
        assert_eq!(answer.header("connection"), Some("close"), "{answer:?}");
        assert!(waiting.closed().await);
    }
}

/// Counts the storage waits in progress (long-polls waiting for data).
struct WaitCounting {
    inner: Arc<dyn StreamStorage>,
    waiting: Arc<AtomicUsize>,
}

/// Takes one off the count when the wait ends or is dropped.
struct WaitEnded(Arc<AtomicUsize>);

impl Drop for WaitEnded {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl ForwardingStorage for WaitCounting {
    fn inner(&self) -> &dyn StreamStorage {
        &*self.inner
    }

    async fn wait(
        &self,
        name: &StreamName,
        after: &Offset,
        timeout: Duration,
    ) -> Result<WaitOutcome, StorageError> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _ended = WaitEnded(self.waiting.clone());
        self.inner.wait(name, after, timeout).await
    }
}

/// Yields (the test runs on one thread, with the server) until `waiting` holds `count`,
/// within [`BOUND`].
async fn until_waiting(waiting: &AtomicUsize, count: usize) {
    tokio::time::timeout(BOUND, async {
        while waiting.load(Ordering::SeqCst) != count {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{count} waits within the bound"));
}

/// A long-poll whose client closes the connection stops waiting at once, not at its timeout.
#[tokio::test]
async fn a_long_poll_ends_when_its_client_leaves() {
    let waiting = Arc::new(AtomicUsize::new(0));
    let storage = Arc::new(WaitCounting {
        inner: Arc::new(MemoryStreamStorage::new()),
        waiting: waiting.clone(),
    });
    let server = loopback::served_over(
        storage,
        ServerConfig {
            long_poll_timeout: Duration::from_secs(600),
            ..ServerConfig::default()
        },
    )
    .await;
    let mut creator = Client::connect(server.addr).await;
    creator
        .send(&request("PUT", "/v1/stream/lp", "", b""))
        .await;
    assert_eq!(creator.answer("PUT").await.status, 201);
    let mut client = Client::connect(server.addr).await;
    client
        .send(&request("POST", "/v1/stream/lp", "", b"x"))
        .await;
    let appended = client.answer("POST").await;
    let tail = appended
        .header("stream-next-offset")
        .expect("offset")
        .to_owned();
    let path = format!("/v1/stream/lp?offset={tail}&live=long-poll");
    client.send(&request("GET", &path, "", b"")).await;
    until_waiting(&waiting, 1).await;
    drop(client);
    until_waiting(&waiting, 0).await;
}

/// On a paused clock: the server closes `client`'s connection, sending nothing more, at the
/// read limit after `since` (within a second).
async fn assert_closed_at_the_limit(client: &mut Client, since: tokio::time::Instant, what: &str) {
    assert!(
        client.closed().await,
        "{what}: the server closes the connection"
    );
    let waited = since.elapsed();
    assert!(
        (READ_TIMEOUT..READ_TIMEOUT + Duration::from_secs(1)).contains(&waited),
        "{what}: closed after {waited:?}"
    );
}

/// A request head that stops arriving midway closes the connection 30 s after the head
/// began to be awaited, without an answer, on the loop and on a connection handed to hyper.
#[tokio::test(start_paused = true)]
async fn a_head_that_stops_midway_closes_the_connection_after_30_s() {
    let server = server().await;
    let mut ours = Client::connect_bounded(server.addr, PAST_READ_TIMEOUT).await;
    let since = tokio::time::Instant::now();
    ours.send(b"POST /v1/stream/h HTTP/1.1\r\nHost: te").await;
    assert_closed_at_the_limit(&mut ours, since, "a stalled head on the loop").await;

    // The create makes this connection hyper's.
    let mut hypers = Client::connect_bounded(server.addr, PAST_READ_TIMEOUT).await;
    hypers.send(&request("PUT", "/v1/stream/h", "", b"")).await;
    assert_eq!(hypers.answer("PUT").await.status, 201);
    let since = tokio::time::Instant::now();
    hypers
        .send(b"GET /v1/stream/h?offset=-1 HTTP/1.1\r\nHo")
        .await;
    assert_closed_at_the_limit(&mut hypers, since, "a stalled head on hyper's connection").await;
}

/// The limit counts from the last answer: a request 29 s after it is answered, and a
/// connection that stays silent is closed 30 s after its last answer.
#[tokio::test(start_paused = true)]
async fn a_kept_alive_connection_is_closed_30_s_after_its_last_answer() {
    let server = server().await;
    let mut creator = Client::connect_bounded(server.addr, PAST_READ_TIMEOUT).await;
    creator.send(&request("PUT", "/v1/stream/k", "", b"")).await;
    assert_eq!(creator.answer("PUT").await.status, 201);
    let mut client = Client::connect_bounded(server.addr, PAST_READ_TIMEOUT).await;
    for i in 0..3 {
        tokio::time::sleep(READ_TIMEOUT - Duration::from_secs(1)).await;
        client
            .send(&request("POST", "/v1/stream/k", "", b"x"))
            .await;
        let answer = client.answer("POST").await;
        assert_eq!(
            answer.status, 204,
            "append {i} after 29 s of silence: {answer:?}"
        );
    }
    let since = tokio::time::Instant::now();
    assert_closed_at_the_limit(&mut client, since, "an idle connection").await;
}

/// A body is limited by its silences, not its length: one sent a byte every 20 s is stored;
/// one that stops midway closes the connection 30 s after its last byte, unanswered.
#[tokio::test(start_paused = true)]
async fn a_body_that_stops_midway_closes_the_connection_30_s_after_its_last_byte() {
    let server = server().await;
    let mut client = Client::connect_bounded(server.addr, PAST_READ_TIMEOUT).await;
    let mut creator = Client::connect_bounded(server.addr, PAST_READ_TIMEOUT).await;
    creator.send(&request("PUT", "/v1/stream/b", "", b"")).await;
    assert_eq!(creator.answer("PUT").await.status, 201);

    let slow = request("POST", "/v1/stream/b", "", b"abcd");
    let (head, body) = slow.split_at(slow.len() - 4);
    client.send(head).await;
    for byte in body {
        // A sleep, not `advance`: the clock moves only once the server has taken what was
        // sent (the runtime is idle), as it would on a real one.
        tokio::time::sleep(Duration::from_secs(20)).await;
        client.send(&[*byte]).await;
    }
    let answer = client.answer("POST").await;
    assert_eq!(answer.status, 204, "a slow body is stored: {answer:?}");

    let stalled = request("POST", "/v1/stream/b", "", b"efgh");
    client.send(&stalled[..stalled.len() - 2]).await;
    let since = tokio::time::Instant::now();
    assert_closed_at_the_limit(&mut client, since, "a stalled body").await;
    // The creator's connection has been closed meanwhile, idle for longer than the limit.
    let mut reader = Client::connect_bounded(server.addr, PAST_READ_TIMEOUT).await;
    reader
        .send(&request("GET", "/v1/stream/b?offset=-1", "", b""))
        .await;
    let read = reader.answer("GET").await;
    assert_eq!(read.body, b"abcd", "only the whole body was stored");
}

/// The same limit on a body that hyper reads (a chunked one, handed over): chunks 20 s apart
/// are stored; a body that stops midway ends its connection 30 s after its last byte and
/// nothing of it is stored.
#[tokio::test(start_paused = true)]
async fn a_chunked_body_that_stops_midway_closes_the_connection_30_s_after_its_last_byte() {
    let server = server().await;
    let mut creator = Client::connect_bounded(server.addr, PAST_READ_TIMEOUT).await;
    creator.send(&request("PUT", "/v1/stream/c", "", b"")).await;
    assert_eq!(creator.answer("PUT").await.status, 201);

    let head = b"POST /v1/stream/c HTTP/1.1\r\nHost: test\r\nContent-Type: text/plain\r\n\
                 Transfer-Encoding: chunked\r\n\r\n";
    let mut slow = Client::connect_bounded(server.addr, PAST_READ_TIMEOUT).await;
    slow.send(head).await;
    for chunk in [&b"2\r\nab\r\n"[..], b"2\r\ncd\r\n", b"0\r\n\r\n"] {
        tokio::time::sleep(Duration::from_secs(20)).await;
        slow.send(chunk).await;
    }
    let answer = slow.answer("POST").await;
    assert_eq!(
        answer.status, 204,
        "a slow chunked body is stored: {answer:?}"
    );

    let mut stalled = head.to_vec();
    stalled.extend_from_slice(b"4\r\nef");
    let answer =
        courier_testkit::http::assert_stalled_body_closed(server.addr, &stalled, READ_TIMEOUT)
            .await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "an error answer or none: {answer}"
    );
    let mut reader = Client::connect_bounded(server.addr, PAST_READ_TIMEOUT).await;
    reader
        .send(&request("GET", "/v1/stream/c?offset=-1", "", b""))
        .await;
    let read = reader.answer("GET").await;
    assert_eq!(read.body, b"abcd", "only the whole body was stored");
}

/// How many bytes arrive on `tcp` until the server closes (or resets) it.
async fn bytes_until_closed(tcp: &mut TcpStream) -> usize {
    let mut taken = 0;
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let read = tokio::time::timeout(PAST_READ_TIMEOUT, tcp.read(&mut chunk))
            .await
            .expect("the connection ends");
        match read {
            Ok(0) | Err(_) => return taken,
            Ok(n) => taken += n,
        }
    }
}

/// Creates stream `name` holding one record of `len` bytes, which it returns.
async fn stream_with_record(addr: SocketAddr, name: &str, len: usize) -> Vec<u8> {
    let mut creator = Client::connect_bounded(addr, PAST_READ_TIMEOUT).await;
    let path = format!("/v1/stream/{name}");
    creator.send(&request("PUT", &path, "", b"")).await;
    assert_eq!(creator.answer("PUT").await.status, 201);
    let record = vec![b'x'; len];
    creator.send(&request("POST", &path, "", &record)).await;
    assert_eq!(creator.answer("POST").await.status, 204);
    record
}

/// A client that sends reads and never takes their answers is closed once the server's
/// writes have made no progress for 60 s: it holds no task and no answer's buffers for longer
/// (paused clock).
#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_closed_60_s_after_its_answers_stop_moving() {
    let server = server().await;
    let record = stream_with_record(server.addr, "w", 2 << 20).await;

    // Twenty reads of the 2 MiB record at once: far more than the sockets hold.
    const READS: usize = 20;
    let mut reader = TcpStream::connect(server.addr).await.expect("connect");
    let read = request("GET", "/v1/stream/w?offset=-1", "", b"");
    reader.write_all(&read.repeat(READS)).await.expect("send");
    tokio::time::sleep(WRITE_TIMEOUT + Duration::from_secs(1)).await;

    // Taking the answers now: the server gave up on them before the last.
    let taken = bytes_until_closed(&mut reader).await;
    assert!(
        taken < READS * record.len(),
        "{taken} bytes arrived: every answer was written to a client that did not read"
    );
}

/// The same limit on a connection handed to hyper (here by `Connection: close`): a 20 MiB
/// answer that is never read stops short (paused clock).
#[tokio::test(start_paused = true)]
async fn a_client_of_hyper_that_stops_reading_is_closed_60_s_after_its_answer_stops_moving() {
    let server = server().await;
    let record = stream_with_record(server.addr, "h", 20 << 20).await;
    let mut reader = TcpStream::connect(server.addr).await.expect("connect");
    let read = request(
        "GET",
        "/v1/stream/h?offset=-1",
        "Connection: close\r\n",
        b"",
    );
    reader.write_all(&read).await.expect("send");
    tokio::time::sleep(WRITE_TIMEOUT + Duration::from_secs(1)).await;
    let taken = bytes_until_closed(&mut reader).await;
    assert!(
        taken < record.len(),
        "{taken} bytes arrived: the whole answer was written to a client that did not read"
    );
}

/// The limit is on silence, not on length: a client that takes 1 MiB of its answers every
/// 20 s gets all of them, each taking far longer than the limit to arrive (paused clock).
#[tokio::test(start_paused = true)]
async fn a_client_that_reads_slowly_gets_every_answer() {
    let server = server().await;
    // One record per answer, 6 MiB: two minutes an answer at this pace.
    let record = stream_with_record(server.addr, "s", 6 << 20).await;

    const READS: usize = 2;
    let mut reader = Client::connect_bounded(server.addr, PAST_READ_TIMEOUT).await;
    let read = request("GET", "/v1/stream/s?offset=-1", "", b"");
    reader.send(&read.repeat(READS)).await;
    let mut chunk = vec![0u8; 1 << 20];
    let mut taken = 0;
    while taken < READS * record.len() {
        tokio::time::sleep(Duration::from_secs(20)).await;
        let mut this_time = 0;
        while this_time < chunk.len() {
            let n =
                tokio::time::timeout(PAST_READ_TIMEOUT, reader.tcp.read(&mut chunk[this_time..]))
                    .await
                    .expect("read in time")
                    .expect("read");
            assert!(n > 0, "closed after {taken} bytes taken 1 MiB per 20 s");
            this_time += n;
        }
        taken += this_time;
    }
}
