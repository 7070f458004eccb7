//! Requests a well-behaved client would not send, written byte by byte over loopback TCP so
//! nothing between the test and the server rewrites them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use courier_impls::memory::MemoryStreamStorage;
use courier_streams::server::{ServerConfig, StreamsServer, SubscriptionSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod loopback;
use loopback::{served, server};

/// Sends `head` (request line and headers, without the blank line) with `body` on a fresh
/// connection that the server closes after answering; returns the status and response body.
async fn exchange(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    let (status, _headers, body) = exchange_with_headers(addr, head, body).await;
    (status, body)
}

async fn create(addr: SocketAddr, path: &str, content_type: &str) {
    let head = format!("PUT {path} HTTP/1.1\r\nContent-Type: {content_type}\r\nContent-Length: 0");
    let (status, body) = exchange(addr, &head, b"").await;
    assert_eq!(status, 201, "create {path}: {body}");
}

/// RFC 9112 §6.1: a transfer coding the server does not understand gets 501, and nothing of
/// the body is stored (hyper decodes the final `chunked` and would pass the rest on as is).
#[tokio::test]
async fn unknown_transfer_coding_is_not_implemented() {
    let server = server().await;
    create(server.addr, "/v1/stream/coded", "text/plain").await;
    for coding in ["gzip, chunked", "x-unknown, chunked"] {
        let head = format!(
            "POST /v1/stream/coded HTTP/1.1\r\nContent-Type: text/plain\r\nTransfer-Encoding: {coding}"
        );
        let (status, body) = exchange(server.addr, &head, b"5\r\nhello\r\n0\r\n\r\n").await;
        assert_eq!(status, 501, "Transfer-Encoding: {coding}: {body}");
        assert!(body.contains("not implemented"), "{body}");
    }
    let (status, body) = exchange(server.addr, "GET /v1/stream/coded HTTP/1.1", b"").await;
    assert_eq!((status, body.as_str()), (200, ""), "nothing was stored");
    // Plain chunked still works.
    let head =
        "POST /v1/stream/coded HTTP/1.1\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked";
    let (status, body) = exchange(server.addr, head, b"5\r\nhello\r\n0\r\n\r\n").await;
    assert_eq!(status, 204, "{body}");
    let (_, body) = exchange(server.addr, "GET /v1/stream/coded HTTP/1.1", b"").await;
    assert_eq!(body, "hello");
}

/// An append whose body arrives in several chunks (several frames for the handler to join) is
/// stored byte for byte.
#[tokio::test]
async fn a_body_in_several_chunks_is_stored_whole() {
    let server = server().await;
    create(server.addr, "/v1/stream/chunks", "application/octet-stream").await;
    let parts: [Vec<u8>; 4] = [
        b"first ".to_vec(),
        (0..70_000u32).map(|i| b'a' + (i % 26) as u8).collect(),
        b" middle ".to_vec(),
        vec![b'z'; 5_000],
    ];
    let mut chunked = Vec::new();
    for part in &parts {
        chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        chunked.extend_from_slice(part);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = "POST /v1/stream/chunks HTTP/1.1\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked";
    let (status, body) = exchange(server.addr, head, &chunked).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = exchange(server.addr, "GET /v1/stream/chunks HTTP/1.1", b"").await;
    assert_eq!(status, 200);
    assert_eq!(body.as_bytes(), parts.concat().as_slice());
}

/// JSON mode refuses a body nesting deeper than the limit with 400 naming the problem, and
/// stores nothing; a body at the limit is stored.
#[tokio::test]
async fn deeply_nested_json_is_refused() {
    let server = server().await;
    create(server.addr, "/v1/stream/deep", "application/json").await;
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let post = |len: usize| {
        format!(
            "POST /v1/stream/deep HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {len}"
        )
    };
    let deep = nested(200_000);
    let (status, body) = exchange(server.addr, &post(deep.len()), deep.as_bytes()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("levels deep"), "{body}");
    let (_, body) = exchange(server.addr, "GET /v1/stream/deep HTTP/1.1", b"").await;
    assert_eq!(body, "[]", "nothing was stored");
    // One message nesting 64 deep, inside the flattened outer array.
    let at_limit = nested(65);
    let (status, body) = exchange(server.addr, &post(at_limit.len()), at_limit.as_bytes()).await;
    assert_eq!(status, 204, "{body}");
    let (_, body) = exchange(server.addr, "GET /v1/stream/deep HTTP/1.1", b"").await;
    assert_eq!(body, format!("[{}]", nested(64)));
}

/// `serve` answers reads and appends without the axum router (its hot routes): every answer,
/// status, headers and body, is the one `router()` gives the same request, for names that
/// need decoding, names it refuses and paths it leaves to the router. Requests that say
/// `Connection: close` are hyper's; the others are answered by the server's own connection
/// loop (reads and appends) or handed to hyper: both ways are compared.
#[tokio::test]
async fn served_answers_are_the_routers() {
    for ending in [Ending::ConnectionClose, Ending::HalfClose] {
        compare_served_with_router(ServerConfig::default(), ending).await;
    }
}

/// The same with the subscription APIs on: `__ds/` paths are then the router's control routes.
#[tokio::test]
async fn served_answers_are_the_routers_with_subscriptions_on() {
    for ending in [Ending::ConnectionClose, Ending::HalfClose] {
        let config = ServerConfig {
            subscriptions: Some(SubscriptionSettings::default()),
            ..ServerConfig::default()
        };
        compare_served_with_router(config, ending).await;
    }
}

async fn compare_served_with_router(config: ServerConfig, ending: Ending) {
    let served = served(config.clone()).await;
    let mut router = StreamsServer::new(Arc::new(MemoryStreamStorage::new()), config).router();
    let requests: [(&str, &str, &[u8]); 19] = [
        ("PUT", "/v1/stream/a%2Fb", b""),
        ("POST", "/v1/stream/a%2Fb", b"hello"),
        ("GET", "/v1/stream/a/b?offset=-1", b""),
        ("GET", "/v1/stream/a%2Fb?offset=now", b""),
        ("GET", "/v1/stream/a%2fb?offset=bad", b""),
        ("POST", "/v1/stream/a%2Fb", b""),
        ("GET", "/v1/stream/a%20b", b""),
        ("POST", "/v1/stream/a%20b", b"x"),
        ("GET", "/v1/stream/%FF", b""),
        ("POST", "/v1/stream/%FF", b"x"),
        ("GET", "/v1/stream/", b""),
        ("POST", "/v1/stream/", b"x"),
        ("GET", "/v1/stream/__ds", b""),
        ("POST", "/v1/stream/__ds/x", b"x"),
        ("GET", "/v1/stream/__ds/x", b""),
        ("GET", "/v1/stream/__dsx", b""),
        ("POST", "/v1/stream/__dsx", b"x"),
        ("GET", "/v1/stream/missing", b""),
        ("POST", "/v1/stream/missing", b"x"),
    ];
    for (method, path, body) in requests {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: {}",
            body.len()
        );
        let (status, headers, text) = exchange_ending(served.addr, &head, body, ending).await;
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "test")
            .header("content-type", "text/plain")
            .body(axum::body::Body::from(body.to_vec()))
            .expect("request");
        let response = tower::ServiceExt::oneshot(&mut router, request)
            .await
            .expect("infallible");
        let mut expected_headers: Vec<String> = response
            .headers()
            .iter()
            .filter(|(name, _)| *name != "content-length")
            .map(|(name, value)| format!("{name}: {}", value.to_str().expect("text")))
            .collect();
        expected_headers.sort();
        let expected_status = response.status().as_u16();
        let expected_body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let what = format!("{method} {path} ({ending:?})");
        assert_eq!(status, expected_status, "{what}: {text}");
        if method == "PUT" {
            assert_eq!(status, 201, "{what}: {text}");
        }
        assert_eq!(headers, expected_headers, "{what}");
        assert_eq!(text.as_bytes(), &expected_body[..], "{what}");
    }
}

/// An append is held to `max_append_bytes` (413 past it), not to axum's 2 MiB default body
/// limit, on `serve`'s hot routes as through the router, on the server's own connection loop
/// and on hyper's.
#[tokio::test]
async fn appends_are_held_to_the_configured_limit() {
    let server = served(ServerConfig {
        max_append_bytes: 3 << 20,
        ..ServerConfig::default()
    })
    .await;
    let addr = server.addr;
    create(addr, "/v1/stream/big", "application/octet-stream").await;
    for ending in [Ending::ConnectionClose, Ending::HalfClose] {
        for (len, expected) in [((3 << 20) - 1, 204), ((3 << 20) + 1, 413)] {
            let head = format!(
                "POST /v1/stream/big HTTP/1.1\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}"
            );
            let (status, _, body) = exchange_ending(addr, &head, &vec![7; len], ending).await;
            assert_eq!(status, expected, "{len} bytes ({ending:?}): {body}");
        }
    }
}

/// How a one-request connection ends.
#[derive(Clone, Copy, Debug)]
enum Ending {
    /// The request says `Connection: close` (so hyper answers it).
    ConnectionClose,
    /// The request keeps the connection alive and the client then shuts its sending side, so
    /// the server closes after answering (reads and appends are then answered by its loop).
    HalfClose,
}

/// As [`exchange`], with the response's headers (`name: value`, sorted) except those written
/// on the wire by the connection (`date`, `content-length`, `connection`).
async fn exchange_with_headers(
    addr: SocketAddr,
    head: &str,
    body: &[u8],
) -> (u16, Vec<String>, String) {
    exchange_ending(addr, head, body, Ending::ConnectionClose).await
}

async fn exchange_ending(
    addr: SocketAddr,
    head: &str,
    body: &[u8],
    ending: Ending,
) -> (u16, Vec<String>, String) {
    let talk = async {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let head = match ending {
            Ending::ConnectionClose => format!("{head}\r\nHost: test\r\nConnection: close\r\n\r\n"),
            Ending::HalfClose => format!("{head}\r\nHost: test\r\n\r\n"),
        };
        tcp.write_all(head.as_bytes()).await.expect("send head");
        tcp.write_all(body).await.expect("send body");
        if let Ending::HalfClose = ending {
            tcp.shutdown().await.expect("shut the sending side");
        }
        let mut response = Vec::new();
        tcp.read_to_end(&mut response).await.expect("read response");
        response
    };
    let response = tokio::time::timeout(Duration::from_secs(10), talk)
        .await
        .expect("the server answers within 10 s");
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| {
        panic!(
            "no head in {} bytes answering {head:?} ({ending:?})",
            response.len()
        )
    });
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.get(9..12))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let mut headers: Vec<String> = lines
        .filter(|line| {
            let name = line.split(':').next().unwrap_or_default();
            !["date", "content-length", "connection"].contains(&name)
        })
        .map(str::to_owned)
        .collect();
    headers.sort();
    (status, headers, body.to_owned())
}
