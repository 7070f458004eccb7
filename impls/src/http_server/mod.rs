//! A server's HTTP/1.1 connections on hyper, with the limits `axum::serve` leaves out.
//!
//! Why not `axum::serve`: it gives hyper no timer, so hyper's 30 s limit on a request head's
//! arrival is off. A client that sends a few bytes and stops, or opens connections and sends
//! nothing, then holds a task and a buffer per connection for ever. [`serve`] is the same
//! accept loop (HTTP/1.1, WebSocket upgrades, graceful shutdown) with the limit on, the same
//! limit on a request body's silence ([`RequestBody`]) and a limit on stalled writes
//! ([`WriteLimited`]), which hyper has neither of.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::convert::Infallible;
//!
//! use courier_impls::http_server::RequestBody;
//!
//! let hello = tower::service_fn(|_request: http::Request<RequestBody>| async {
//!     Ok::<_, Infallible>(http::Response::new(String::from("hello")))
//! });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! courier_impls::http_server::serve(listener, hello, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

mod request_body;
mod write_limit;

pub use request_body::{BODY_SILENCE_LIMIT, RequestBody, RequestBodyError};
pub use write_limit::{WRITE_STALL_LIMIT, WriteLimited};

/// A connection is closed, unanswered, when its next request head has not arrived whole this
/// long after the connection opened or its previous answer was sent (hyper's default).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long to wait after an accept error that is not about one connection (too many open
/// files, out of memory) before accepting again, as hyper's and axum's servers do.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Serves `service` on `listener` until `shutdown` completes, then stops accepting, lets every
/// connection finish the request it is answering (idle ones close at once), and returns when
/// all are gone. Upgraded connections (WebSocket) are their handler's from the upgrade on.
/// Request bodies are hyper's, failing after [`BODY_SILENCE_LIMIT`] without a byte; a
/// connection whose writes make no progress for [`WRITE_STALL_LIMIT`] is closed.
///
/// Errors: none so far; accept errors are logged and retried.
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    S: tower::Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    accept_until(listener, shutdown, |tcp, stop| {
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(
                TokioIo::new(WriteLimited::new(tcp)),
                TowerToHyperService::new(
                    service
                        .clone()
                        .map_request(|request: Request<Incoming>| request.map(RequestBody::new)),
                ),
            )
            .with_upgrades();
        async move {
            tokio::pin!(connection);
            until_stopped(connection, &stop, |connection| {
                connection.graceful_shutdown()
            })
            .await;
        }
    })
    .await
}

/// Drives a hyper connection until it ends, or until `stop`: then `graceful_shutdown` (hyper's
/// method of that connection type) lets it finish the request in flight, if any, and close.
pub async fn until_stopped<C, E>(
    mut connection: Pin<&mut C>,
    stop: &CancellationToken,
    graceful_shutdown: impl FnOnce(Pin<&mut C>),
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stop.cancelled() => {
            graceful_shutdown(connection.as_mut());
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "HTTP/1 connection ended with an error");
    }
}

/// The accept loop of a server: each connection accepted on `listener` (with `TCP_NODELAY`)
/// is served by `serve_one(tcp, stop)` on a task of its own, until `shutdown` completes. Then
/// it stops accepting, cancels `stop` (each connection finishes the request it is answering
/// and closes), and returns when every connection's task has ended. Dropped unfinished (its
/// task aborted), it still cancels `stop`.
///
/// Errors: none so far; accept errors are logged and retried.
pub async fn accept_until<F, C>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    mut serve_one: F,
) -> std::io::Result<()>
where
    F: FnMut(TcpStream, CancellationToken) -> C,
    C: Future<Output = ()> + Send + 'static,
{
    let stop = CancellationToken::new();
    let _stop_when_dropped = stop.clone().drop_guard();
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let tcp = match accepted {
            Ok((tcp, _peer)) => tcp,
            Err(error) if is_connection_error(&error) => continue,
            Err(error) => {
                tracing::error!(%error, "accepting a connection failed; retrying in 1 s");
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        // Small responses must not wait for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
        connections.spawn(serve_one(tcp, stop.clone()));
    }
    drop(listener);
    stop.cancel();
    connections.close();
    connections.wait().await;
    Ok(())
}

/// Errors of one connection that went away before it was accepted: nothing to wait for.
fn is_connection_error(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::Arc;

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::{Notify, oneshot};
    use tokio::time::Instant;

    use super::*;

    /// Reads on a paused clock are bounded by this (it costs nothing).
    const BOUND: Duration = Duration::from_secs(300);

    /// A server that reads each request's body and answers `ok`, or `408` when the body went
    /// silent. With `gates` (entered, open), a request notifies `entered` and waits for `open`
    /// first.
    async fn server(
        gates: Option<(Arc<Notify>, Arc<Notify>)>,
    ) -> (
        SocketAddr,
        oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let service = tower::service_fn(move |request: Request<RequestBody>| {
            let gates = gates.clone();
            async move {
                if let Some((entered, open)) = gates {
                    entered.notify_one();
                    open.notified().await;
                }
                let answer = match request.into_body().collect().await {
                    Ok(_) => Response::new(String::from("ok")),
                    Err(RequestBodyError::Silent(_)) => {
                        let mut answer = Response::new(String::from("silent"));
                        *answer.status_mut() = http::StatusCode::REQUEST_TIMEOUT;
                        answer
                    }
                    Err(error) => panic!("unexpected body error: {error}"),
                };
                Ok::<_, Infallible>(answer)
            }
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(serve(listener, service, async move {
            let _ = stopped.await;
        }));
        (addr, stop, serving)
    }

    /// Everything the server sends until it closes the connection.
    async fn read_to_close(tcp: &mut TcpStream) -> String {
        let mut got = Vec::new();
        tokio::time::timeout(BOUND, tcp.read_to_end(&mut got))
            .await
            .expect("the server closes the connection in time")
            .expect("read");
        String::from_utf8(got).expect("text")
    }

    /// Reads one `ok` answer (its length is known).
    async fn read_answer(tcp: &mut TcpStream) -> String {
        let mut got = Vec::new();
        while !got.ends_with(b"\r\n\r\nok") {
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout(BOUND, tcp.read(&mut chunk))
                .await
                .expect("answered in time")
                .expect("read");
            assert!(n > 0, "closed before the answer: {got:?}");
            got.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8(got).expect("text")
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";

    #[tokio::test(start_paused = true)]
    async fn a_head_that_stops_midway_is_closed_unanswered_after_30_s() {
        let (addr, _stop, _serving) = server(None).await;
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let since = Instant::now();
        tcp.write_all(b"GET / HTTP/1.1\r\nHo").await.expect("send");
        assert_eq!(
            read_to_close(&mut tcp).await,
            "",
            "closed without an answer"
        );
        let waited = since.elapsed();
        assert!(
            (HEADER_READ_TIMEOUT..HEADER_READ_TIMEOUT + Duration::from_secs(1)).contains(&waited),
            "closed after {waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_alive_connection_is_closed_30_s_after_its_last_answer() {
        let (addr, _stop, _serving) = server(None).await;
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        for i in 0..3 {
            tokio::time::sleep(HEADER_READ_TIMEOUT - Duration::from_secs(1)).await;
            tcp.write_all(GET).await.expect("send");
            let answer = read_answer(&mut tcp).await;
            assert!(answer.starts_with("HTTP/1.1 200"), "request {i}: {answer}");
        }
        let since = Instant::now();
        assert_eq!(read_to_close(&mut tcp).await, "");
        let waited = since.elapsed();
        assert!(
            (HEADER_READ_TIMEOUT..HEADER_READ_TIMEOUT + Duration::from_secs(1)).contains(&waited),
            "closed after {waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_midway_fails_after_30_s_and_its_connection_closes() {
        let (addr, _stop, _serving) = server(None).await;
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\nabc")
            .await
            .expect("send");
        let since = Instant::now();
        let answer = read_to_close(&mut tcp).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        let waited = since.elapsed();
        assert!(
            (BODY_SILENCE_LIMIT..BODY_SILENCE_LIMIT + Duration::from_secs(1)).contains(&waited),
            "answered after {waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_sends_a_byte_every_20_s_is_read_whole() {
        let (addr, _stop, _serving) = server(None).await;
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\n\r\n")
            .await
            .expect("send");
        for byte in [b"a", b"b", b"c"] {
            tokio::time::sleep(Duration::from_secs(20)).await;
            tcp.write_all(byte).await.expect("send");
        }
        let answer = read_answer(&mut tcp).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    /// A client that asks for a large answer and never reads it is let go once the server's
    /// writes have made no progress for `WRITE_STALL_LIMIT`: the answer stops short.
    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_reads_its_answer_is_closed() {
        const LARGE: usize = 40 << 20;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let large = tower::service_fn(|_request: Request<RequestBody>| async {
            Ok::<_, Infallible>(Response::new(http_body_util::Full::new(
                bytes::Bytes::from(vec![b'x'; LARGE]),
            )))
        });
        let _serving = tokio::spawn(serve(listener, large, std::future::pending()));
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(GET).await.expect("send");
        tokio::time::sleep(WRITE_STALL_LIMIT + Duration::from_secs(1)).await;
        let mut taken = 0;
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            let read = tokio::time::timeout(BOUND, tcp.read(&mut chunk))
                .await
                .expect("the connection ends");
            match read {
                Ok(0) | Err(_) => break,
                Ok(n) => taken += n,
            }
        }
        assert!(taken < LARGE, "{taken} bytes: the whole answer was written");
    }

    /// Shutdown: the request in flight is answered, then its connection closes; an idle
    /// connection closes at once; `serve` returns once both are gone.
    #[tokio::test]
    async fn shutdown_finishes_the_request_in_flight_and_closes_idle_connections() {
        let (entered, open) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let (addr, stop, serving) = server(Some((entered.clone(), open.clone()))).await;
        let mut idle = TcpStream::connect(addr).await.expect("connect");
        let mut busy = TcpStream::connect(addr).await.expect("connect");
        busy.write_all(GET).await.expect("send");
        tokio::time::timeout(BOUND, entered.notified())
            .await
            .expect("the request reaches the service");
        stop.send(()).expect("serving");
        assert_eq!(
            read_to_close(&mut idle).await,
            "",
            "the idle connection closes"
        );
        open.notify_one();
        let answer = read_to_close(&mut busy).await;
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"),
            "{answer}"
        );
        let served = tokio::time::timeout(BOUND, serving)
            .await
            .expect("serve returns in time")
            .expect("serve task");
        assert!(served.is_ok(), "{served:?}");
    }
}
