//! T4 and T5 over real WebSockets: the axum server on loopback and raw tokio-tungstenite
//! clients that stop reading, so heartbeats and back-pressure go through real TCP buffers
//! (the same cases on the in-memory fake are in tests/hub.rs); frames over the size limit.

use std::time::Duration;

use courier_hub::server::{HubServer, ServerOptions};
use courier_hub::{Frame, Hub, HubConfig, HubError, Metrics};
use courier_testkit::logs::CapturedLog;
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const WAIT: Duration = Duration::from_secs(10);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A hub served on a loopback port; the server stops when the returned sender is dropped.
async fn serve(config: HubConfig) -> (Hub, String, tokio::sync::oneshot::Sender<()>) {
    serve_with(config, ServerOptions::default()).await
}

async fn serve_with(
    config: HubConfig,
    options: ServerOptions,
) -> (Hub, String, tokio::sync::oneshot::Sender<()>) {
    let hub = Hub::new(None, config).await.expect("hub");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = HubServer::new(hub.clone(), options);
    tokio::spawn(server.serve(listener, async move {
        let _ = stop_rx.await;
    }));
    (hub, format!("ws://{addr}/ws"), stop_tx)
}

/// Connects as `id` and reads the welcome, so the client is registered when this returns.
async fn connect(url: &str, id: &str) -> Socket {
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("{url}?client_id={id}"))
        .await
        .expect("connects");
    match tokio::time::timeout(WAIT, socket.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => assert!(text.contains("welcome"), "{text}"),
        other => panic!("expected the welcome, got {other:?}"),
    }
    socket
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The close code the server sent, reading past any data still buffered.
async fn close_code(socket: &mut Socket) -> Option<CloseCode> {
    loop {
        match tokio::time::timeout(WAIT, socket.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| f.code),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_)) | None) => return None,
            Err(_) => panic!("the server did not close the connection"),
        }
    }
}

/// The close code in the server's frames (unmasked, short) read raw until the socket ends.
async fn raw_close_code(
    stream: tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
) -> Option<u16> {
    use tokio::io::AsyncReadExt;
    let tokio_tungstenite::MaybeTlsStream::Plain(mut tcp) = stream else {
        panic!("plain TCP expected on loopback");
    };
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(WAIT, async {
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = tcp.read(&mut chunk).await {
            bytes.extend_from_slice(&chunk[..n]);
        }
    });
    read.await.expect("the server ends the connection");
    let mut at = 0;
    while at + 2 <= bytes.len() {
        let (opcode, len) = (bytes[at] & 0x0f, usize::from(bytes[at + 1] & 0x7f));
        assert!(len < 126, "short control frames only");
        if opcode == 0x8 && len >= 2 {
            return Some(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
        }
        at += 2 + len;
    }
    None
}

#[tokio::test]
async fn t4_a_client_that_stops_answering_pings_is_closed_and_removed() {
    let config = HubConfig::default()
        .with_read_timeout(Duration::from_millis(600))
        .with_ping_interval(Duration::from_millis(150));
    let (hub, url, _stop) = serve(config).await;
    // tungstenite answers pings only while the socket is read: `silent` is never read again,
    // `lively` is read all along.
    let silent = connect(&url, "silent").await;
    let mut lively = connect(&url, "lively").await;
    let reader = tokio::spawn(async move {
        while let Some(Ok(message)) = lively.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    });
    until("the silent client is removed", || !hub.is_local("silent")).await;
    assert!(hub.is_local("lively"), "a client answering pings stays");
    assert_eq!(Metrics::get(&hub.metrics().heartbeat_timeouts), 1);
    // Read the raw bytes: through tungstenite, reading would queue pong replies, and writing
    // them to the closed socket makes the kernel answer with a reset that discards the close
    // frame still unread.
    let raw = silent.into_inner();
    assert_eq!(raw_close_code(raw).await, Some(4002));
    hub.shutdown().await;
    reader.await.expect("reader");
}

#[tokio::test]
async fn t5_a_client_that_stops_reading_gets_send_buffer_full_then_is_evicted() {
    let grace = Duration::from_millis(300);
    let config = HubConfig::default()
        .with_message_buffer_cap(4)
        .with_slow_client_grace(grace);
    let (hub, url, _stop) = serve(config).await;
    let mut slow = connect(&url, "slow").await;
    let mut fast = connect(&url, "fast").await;
    // 60 KiB frames to a client that never reads: the socket buffers fill (a few MiB on
    // loopback), the writer blocks, the 4-frame queue fills, pushes are refused.
    let chunk = "x".repeat(60 * 1024);
    let mut refused = 0;
    for _ in 0..2000 {
        match hub.push("slow", Frame::text(chunk.clone())).await {
            Ok(_) => {}
            Err(HubError::SendBufferFull(id)) => {
                assert_eq!(id, "slow");
                refused += 1;
                if refused == 20 {
                    break;
                }
            }
            Err(e) => panic!("unexpected {e}"),
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(
        refused, 20,
        "pushes past full socket buffers and queue are refused"
    );
    // The slow client does not hold up the others.
    hub.push("fast", Frame::text("still fast"))
        .await
        .expect("push");
    match tokio::time::timeout(WAIT, fast.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => assert_eq!(text.as_str(), "still fast"),
        other => panic!("expected the frame, got {other:?}"),
    }
    // Still full after the grace period: the next push evicts it. The clock is moved past
    // the grace period rather than waited out; it is paused only while moved, because the
    // sockets need real time.
    tokio::time::pause();
    tokio::time::advance(grace + Duration::from_millis(1)).await;
    tokio::time::resume();
    let late = hub.push("slow", Frame::text("late")).await;
    assert!(matches!(late, Err(HubError::SendBufferFull(_))), "{late:?}");
    until("the slow client is evicted", || !hub.is_local("slow")).await;
    assert_eq!(Metrics::get(&hub.metrics().evictions), 1);
    assert!(Metrics::get(&hub.metrics().drops) >= 21);
    // Reading now drains what the socket held, then the eviction's close (4001).
    assert_eq!(close_code(&mut slow).await, Some(CloseCode::Library(4001)));
    hub.shutdown().await;
}

/// Everything the hub logs while the returned guard lives (this thread's tasks: the tests
/// run on a current-thread runtime).
fn capture_logs() -> (CapturedLog, tracing::subscriber::DefaultGuard) {
    let log = CapturedLog::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (
        log,
        courier_testkit::logs::set_default_subscriber(subscriber),
    )
}

#[tokio::test]
async fn a_frame_over_the_size_limit_closes_with_1009_and_a_warning() {
    let (logs, _guard) = capture_logs();
    let config = HubConfig::default().with_max_message_bytes(1024);
    let (hub, url, _stop) = serve(config).await;
    // At the limit: served (not JSON, so the dispatcher answers with an error frame).
    let mut fits = connect(&url, "fits").await;
    fits.send(Message::text("f".repeat(1024)))
        .await
        .expect("send");
    match tokio::time::timeout(WAIT, fits.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => assert!(text.contains("error"), "{text}"),
        other => panic!("expected the dispatcher's error frame, got {other:?}"),
    }
    // Just over, and far over the limit: closed with 1009 Message Too Big.
    for (id, size) in [("just-over", 1025), ("far-over", 1024 * 1024)] {
        let mut socket = connect(&url, id).await;
        socket
            .send(Message::text("secret".repeat(size / 6 + 1)))
            .await
            .expect("send");
        assert_eq!(close_code(&mut socket).await, Some(CloseCode::Size), "{id}");
        until("the client is removed", || !hub.is_local(id)).await;
    }
    assert!(hub.is_local("fits"));
    let logs = logs.take();
    for id in ["just-over", "far-over"] {
        let line = logs
            .lines()
            .find(|l| l.contains("WARN") && l.contains(id))
            .unwrap_or_else(|| panic!("a warning naming {id}: {logs}"));
        assert!(line.contains("limit=1024"), "{line}");
    }
    assert!(!logs.contains("secret"), "never the content: {logs}");
    hub.shutdown().await;
}

/// The status of `POST /api/v1/broadcast` sent with `auth` (a header line, or nothing).
async fn broadcast_status(addr: &str, auth: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "POST /api/v1/broadcast HTTP/1.1\r\nHost: hub\r\n{auth}Content-Length: 2\r\nConnection: close\r\n\r\nhi"
    );
    socket.write_all(request.as_bytes()).await.expect("request");
    let mut response = String::new();
    socket
        .read_to_string(&mut response)
        .await
        .expect("response");
    response
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"))
}

#[tokio::test]
async fn the_api_key_and_the_client_token_must_match_exactly() {
    let options = ServerOptions::default()
        .with_api_key("api-key-0123")
        .with_client_token("token-4567");
    let (hub, url, _stop) = serve_with(HubConfig::default(), options).await;
    let addr = url
        .trim_start_matches("ws://")
        .trim_end_matches("/ws")
        .to_owned();
    for (auth, expected) in [
        ("Authorization: Bearer api-key-0123\r\n", 200),
        ("X-Api-Key: api-key-0123\r\n", 200),
        ("", 401),
        ("Authorization: Bearer api-key-0124\r\n", 401),
        ("Authorization: Bearer api-key-012\r\n", 401),
        ("Authorization: Bearer api-key-01234\r\n", 401),
        ("X-Api-Key: \r\n", 401),
    ] {
        assert_eq!(broadcast_status(&addr, auth).await, expected, "{auth:?}");
    }
    for token in ["", "token-4568", "token-456", "token-45678"] {
        let refused =
            tokio_tungstenite::connect_async(format!("{url}?client_id=c&token={token}")).await;
        match refused {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401, "{token:?}")
            }
            other => panic!("token {token:?}: expected 401, got {other:?}"),
        }
    }
    let (_accepted, _) =
        tokio_tungstenite::connect_async(format!("{url}?client_id=c&token=token-4567"))
            .await
            .expect("the right token is accepted");
    until("registered", || hub.is_local("c")).await;
    hub.shutdown().await;
}

/// The server's address, from its WebSocket URL.
fn http_addr(url: &str) -> std::net::SocketAddr {
    url.trim_start_matches("ws://")
        .trim_end_matches("/ws")
        .parse()
        .expect("an address")
}

/// A client that stops midway through its upgrade request's head is closed, unanswered, 30 s
/// after it connected: it holds no task of the server for longer (paused clock).
#[tokio::test(start_paused = true)]
async fn a_request_head_that_stops_midway_is_closed_after_30_s() {
    let (_hub, url, _stop) = serve(HubConfig::default()).await;
    let addr = http_addr(&url);
    courier_testkit::http::assert_stalled_head_closed(
        addr,
        b"GET /ws HTTP/1.1\r\nHost: test\r\nUpgr",
        Duration::from_secs(30),
    )
    .await;
}

/// A push whose body stops midway fails 30 s after its last byte and its connection closes:
/// it holds no task of the server for longer (paused clock).
#[tokio::test(start_paused = true)]
async fn a_request_body_that_stops_midway_is_closed_after_30_s() {
    let (_hub, url, _stop) = serve(HubConfig::default()).await;
    let addr = http_addr(&url);
    let answer = courier_testkit::http::assert_stalled_body_closed(
        addr,
        b"POST /api/v1/broadcast HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\nabc",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "an error answer or none: {answer}"
    );
}
