//! Checks of an HTTP server's connection limits over loopback TCP.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Connects to `addr`, sends `partial_head` (the start of a request head) and stops: the
/// server must close the connection without an answer `limit` after (within a second).
/// Meant for a paused clock (`#[tokio::test(start_paused = true)]`), where the wait is free;
/// gives up after 10 times `limit`.
///
/// Panics: when the server answers, closes early or late, or the connection fails.
pub async fn assert_stalled_head_closed(addr: SocketAddr, partial_head: &[u8], limit: Duration) {
    let got = send_and_await_close(addr, partial_head, limit).await;
    assert!(
        got.is_empty(),
        "closed without an answer, got {:?}",
        String::from_utf8_lossy(&got)
    );
}

/// Connects to `addr`, sends `head_and_partial_body` (a whole request head and part of the
/// body it announces) and stops: the server must close the connection `limit` after (within a
/// second). Returns what the server sent before closing (an error answer, or nothing), for the
/// caller to check. Meant for a paused clock, as [`assert_stalled_head_closed`].
///
/// Panics: when the server closes early or late, or the connection fails.
pub async fn assert_stalled_body_closed(
    addr: SocketAddr,
    head_and_partial_body: &[u8],
    limit: Duration,
) -> String {
    let got = send_and_await_close(addr, head_and_partial_body, limit).await;
    String::from_utf8_lossy(&got).into_owned()
}

/// Sends `bytes` on a new connection and reads until the server closes it, which must happen
/// between `limit` and a second later.
async fn send_and_await_close(addr: SocketAddr, bytes: &[u8], limit: Duration) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let since = Instant::now();
    tcp.write_all(bytes).await.expect("send");
    let mut got = Vec::new();
    tokio::time::timeout(limit * 10, tcp.read_to_end(&mut got))
        .await
        .expect("the server closes the connection")
        .expect("read");
    let waited = since.elapsed();
    assert!(
        (limit..limit + Duration::from_secs(1)).contains(&waited),
        "closed after {waited:?}, the limit being {limit:?}; got {:?}",
        String::from_utf8_lossy(&got)
    );
    got
}
