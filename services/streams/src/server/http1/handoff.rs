//! Handing a connection to hyper: the bytes the loop has read but not answered are read first.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::{Buf, BytesMut};
use courier_impls::http_server::{RequestBody, WriteLimited, until_stopped};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower::Service;

use super::super::hot_routes::HotRoutes;
use super::lapse::READ_TIMEOUT;

/// Serves the rest of the connection with hyper; `unread` is what was read and not answered.
pub(super) async fn serve_with_hyper(
    tcp: TcpStream,
    unread: BytesMut,
    routes: HotRoutes,
    stop: CancellationToken,
) {
    let io = TokioIo::new(WriteLimited::new(Rewound { unread, tcp }));
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut routes = routes.clone();
        routes.call(request.map(|body| Body::new(RequestBody::new(body))))
    });
    // A client that shuts its sending side after its request still gets the answer, as on
    // the loop (hyper's default closes at once on reading the end). hyper's header timeout
    // takes effect only with a timer.
    let connection = hyper::server::conn::http1::Builder::new()
        .half_close(true)
        .timer(TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        .serve_connection(io, service);
    tokio::pin!(connection);
    until_stopped(connection, &stop, |connection| {
        connection.graceful_shutdown()
    })
    .await;
}

/// A TCP stream whose first reads return `unread`.
struct Rewound {
    unread: BytesMut,
    tcp: TcpStream,
}

impl AsyncRead for Rewound {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.unread.is_empty() {
            let n = self.unread.len().min(buf.remaining());
            buf.put_slice(&self.unread[..n]);
            self.unread.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewound {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
