//! Requests a well-behaved client would not send, written byte by byte over loopback TCP so
//! nothing between the test and the server rewrites them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use courier_impls::memory::MemoryStreamStorage;
use courier_streams::server::{ServerConfig, StreamsServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A server on a free loopback port; it stops when the returned task is dropped (aborted).
struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn server() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = StreamsServer::new(
        Arc::new(MemoryStreamStorage::new()),
        ServerConfig::default(),
    );
    let task = tokio::spawn(server.serve(listener, std::future::pending()));
    Server { addr, task }
}

/// Sends `head` (request line and headers, without the blank line) with `body` on a fresh
/// connection that the server closes after answering; returns the status and response body.
async fn exchange(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    let talk = async {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let head = format!("{head}\r\nHost: test\r\nConnection: close\r\n\r\n");
        tcp.write_all(head.as_bytes()).await.expect("send head");
        tcp.write_all(body).await.expect("send body");
        let mut response = Vec::new();
        tcp.read_to_end(&mut response).await.expect("read response");
        response
    };
    let response = tokio::time::timeout(Duration::from_secs(10), talk)
        .await
        .expect("the server answers within 10 s");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
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
