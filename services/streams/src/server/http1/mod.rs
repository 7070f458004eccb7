//! The server's HTTP/1.1 connections: reads and appends of a stream answered by a loop of our
//! own on `httparse`, everything else by hyper.
//!
//! Why: hyper's per-request work was most of an append's CPU beyond the kernel's. Measured on a
//! 2-core machine under `wrk -t1 -c32` (benches/README.md, "A connection loop of our own"): a
//! bare hyper `http1` server that reads a 100-byte POST body and answers with six headers spent
//! 13.5-14.6 µs of CPU per request, the same thing on `httparse` 9.0-9.8 µs; our whole append on
//! hyper cost 14.1 µs. hyper hands a request's body to the service through a channel and polls
//! the connection task again for it; here the body is already in the read buffer.
//!
//! The loop takes only what it is sure to answer as hyper would: `GET` and `POST` of
//! HTTP/1.1 on a hot route ([`HotRoutes::route`]), a body given by one `Content-Length`, no
//! `Transfer-Encoding`, `Expect`, `Upgrade` or `Connection` other than `keep-alive`, not an SSE
//! read. The first request that is anything else hands the connection to hyper, with the bytes
//! already read, for the rest of its life ([`handoff`]), so every unusual case (malformed
//! requests, chunked bodies, `100-continue`, SSE, the router's routes) keeps hyper's answer.
//! The handlers are the same either way; only the framing differs.
//!
//! Both close a connection whose next request head takes more than [`READ_TIMEOUT`](lapse::READ_TIMEOUT) to
//! arrive; the loop also closes one whose body falls silent that long.

mod connection;
mod handoff;
mod head;
mod lapse;
mod response;

use std::future::Future;

use courier_impls::http_server::accept_until;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::hot_routes::HotRoutes;

/// Serves `listener` until `shutdown` completes, then stops accepting, cancels `live_reads`
/// (waiting reads answer at once), lets every connection finish the request it is answering
/// (idle ones close at once), and returns when all are gone.
pub(crate) async fn serve(
    listener: TcpListener,
    routes: HotRoutes,
    shutdown: impl Future<Output = ()> + Send + 'static,
    live_reads: CancellationToken,
) -> std::io::Result<()> {
    // Dropped unfinished (its task aborted), `serve` still ends its waiting reads (and
    // `accept_until` stops its connections: idle ones close, busy ones after their answer).
    let _end_live_reads_when_dropped = live_reads.clone().drop_guard();
    let shutdown = async {
        shutdown.await;
        live_reads.cancel();
    };
    accept_until(listener, shutdown, |tcp, stop| {
        connection::run(tcp, routes.clone(), stop)
    })
    .await
}
