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
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let since = Instant::now();
    tcp.write_all(partial_head)
        .await
        .expect("send the partial head");
    let mut got = Vec::new();
    tokio::time::timeout(limit * 10, tcp.read_to_end(&mut got))
        .await
        .expect("the server closes the connection")
        .expect("read");
    assert!(
        got.is_empty(),
        "closed without an answer, got {:?}",
        String::from_utf8_lossy(&got)
    );
    let waited = since.elapsed();
    assert!(
        (limit..limit + Duration::from_secs(1)).contains(&waited),
        "closed after {waited:?}, the limit being {limit:?}"
    );
}
