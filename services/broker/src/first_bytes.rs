//! [`FirstBytesDeadline`]: a connection that has not sent its first bytes in time fails.
//!
//! Why: neither tonic nor hyper bounds how long a new connection may take to send the HTTP/2
//! preface, and the keep-alive pings start only after it. A client that opens connections and
//! sends nothing would otherwise hold a task and buffers per connection for ever.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use tonic::transport::server::Connected;

/// How long a new connection has to send its first [`FIRST_BYTES`] bytes.
pub(crate) const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(30);

/// The length of the HTTP/2 client preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`); under TLS, the
/// start of the ClientHello.
pub(crate) const FIRST_BYTES: usize = 24;

/// A connection whose reads fail with [`io::ErrorKind::TimedOut`] if its first
/// [`FIRST_BYTES`] bytes have not arrived [`FIRST_BYTES_TIMEOUT`] after it was accepted; from
/// then on, the connection itself.
#[derive(Debug)]
pub(crate) struct FirstBytesDeadline<IO> {
    io: IO,
    /// `None` once the first bytes are in.
    deadline: Option<Pin<Box<Sleep>>>,
    read: usize,
}

impl<IO> FirstBytesDeadline<IO> {
    /// Starts the clock on `io`, just accepted.
    pub(crate) fn new(io: IO) -> FirstBytesDeadline<IO> {
        FirstBytesDeadline {
            io,
            deadline: Some(Box::pin(tokio::time::sleep(FIRST_BYTES_TIMEOUT))),
            read: 0,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for FirstBytesDeadline<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if this.deadline.is_some() {
                    this.read += buf.filled().len() - before;
                    if this.read >= FIRST_BYTES {
                        this.deadline = None;
                    }
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if !expired {
                    return Poll::Pending;
                }
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the connection sent {} of its first {FIRST_BYTES} bytes in {FIRST_BYTES_TIMEOUT:?}",
                        this.read
                    ),
                )))
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for FirstBytesDeadline<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<IO: Connected> Connected for FirstBytesDeadline<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::Instant;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn reads_fail_when_the_first_bytes_are_late() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut server = FirstBytesDeadline::new(server);
        let since = Instant::now();
        client.write_all(&[0; FIRST_BYTES - 1]).await.expect("send");
        let mut got = [0u8; 64];
        assert_eq!(server.read(&mut got).await.expect("read"), FIRST_BYTES - 1);
        let error = server.read(&mut got).await.expect_err("too late");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(since.elapsed(), FIRST_BYTES_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn once_the_first_bytes_are_in_silence_is_allowed() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut server = FirstBytesDeadline::new(server);
        client.write_all(&[0; FIRST_BYTES]).await.expect("send");
        let mut got = [0u8; 64];
        assert_eq!(server.read(&mut got).await.expect("read"), FIRST_BYTES);
        let late = async {
            tokio::time::sleep(FIRST_BYTES_TIMEOUT * 3).await;
            client.write_all(b"late").await.expect("send");
        };
        let (read, ()) = tokio::join!(server.read(&mut got), late);
        assert_eq!(read.expect("a late read is fine"), 4);
    }
}
