//! [`LimitedWrites`]: a connection's writes that fail when the client stops taking bytes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use super::lapse::{Lapse, WRITE_TIMEOUT};

/// Writes to `tcp` that fail with [`io::ErrorKind::TimedOut`] once none has made progress for
/// `lapse`'s limit ([`WRITE_TIMEOUT`]), counted from the first write that had to wait since
/// the last progress. Writes that never wait (nearly all) cost no clock read.
pub(super) struct LimitedWrites<'a> {
    tcp: &'a mut TcpStream,
    lapse: &'a mut Lapse,
    /// Whether a write has waited since the last progress (the lapse runs from then).
    waiting: bool,
}

impl<'a> LimitedWrites<'a> {
    /// Writes to `tcp` limited by `lapse`.
    pub(super) fn new(tcp: &'a mut TcpStream, lapse: &'a mut Lapse) -> LimitedWrites<'a> {
        LimitedWrites {
            tcp,
            lapse,
            waiting: false,
        }
    }

    fn progressed(
        &mut self,
        written: Poll<io::Result<usize>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Pending => {
                if !self.waiting {
                    self.waiting = true;
                    self.lapse.restart();
                }
                match self.lapse.poll_passed(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no byte of the answer could be sent in {WRITE_TIMEOUT:?}"),
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
            done => {
                self.waiting = false;
                done
            }
        }
    }
}

impl AsyncWrite for LimitedWrites<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut *self.tcp).poll_write(cx, buf);
        self.progressed(written, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut *self.tcp).poll_write_vectored(cx, bufs);
        self.progressed(written, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.tcp).poll_shutdown(cx)
    }
}
