//! [`WriteLimited`]: a connection whose writes fail when the client stops taking bytes.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A connection is closed when a write to it makes no progress for this long: the client takes
/// none of an answer, or so little that the socket's buffer stays full (Linux wakes a blocked
/// writer only once about half of what the socket holds has drained, up to 2 MiB with its
/// default buffers, so a large answer must be taken at about 35 KiB/s or more). nginx's
/// `send_timeout`, the same rule, is also 60 s by default. Why: a client that sends requests
/// and never reads the answers (or an SSE or WebSocket client that stops reading) otherwise
/// holds its connection's task and the answers' buffers until TCP gives up, which on a live
/// client is never.
pub const WRITE_STALL_LIMIT: Duration = Duration::from_secs(60);

/// `io` with a limit on stalled writes: a write that has waited [`WRITE_STALL_LIMIT`] since
/// the last progress fails with [`io::ErrorKind::TimedOut`]. Reads pass through. Writes that
/// never wait (nearly all) cost no clock read and no timer.
#[derive(Debug)]
pub struct WriteLimited<IO> {
    io: IO,
    /// Made at the first wait, then moved; armed while `waiting`.
    stall: Option<Pin<Box<Sleep>>>,
    /// Whether a write has waited since the last progress.
    waiting: bool,
}

impl<IO> WriteLimited<IO> {
    /// Wraps `io`.
    pub fn new(io: IO) -> WriteLimited<IO> {
        WriteLimited {
            io,
            stall: None,
            waiting: false,
        }
    }

    /// Passes a write's outcome on; a wait starts the limit (once per stall), and a wait past
    /// it turns into an error.
    fn limited(
        &mut self,
        written: Poll<io::Result<usize>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        if !written.is_pending() {
            self.waiting = false;
            return written;
        }
        if !self.waiting {
            self.waiting = true;
            let due = Instant::now() + WRITE_STALL_LIMIT;
            match &mut self.stall {
                Some(stall) => stall.as_mut().reset(due),
                None => self.stall = Some(Box::pin(tokio::time::sleep_until(due))),
            }
        }
        let passed = self
            .stall
            .as_mut()
            .is_some_and(|stall| stall.as_mut().poll(cx).is_ready());
        if !passed {
            return Poll::Pending;
        }
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no byte could be written in {WRITE_STALL_LIMIT:?}"),
        )))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for WriteLimited<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteLimited<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write(cx, buf);
        self.limited(written, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.limited(written, cx)
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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// 64 KiB: far more than the 1 KiB pipe below holds.
    const ANSWER: usize = 64 << 10;

    #[tokio::test(start_paused = true)]
    async fn a_write_nobody_takes_fails_after_the_limit() {
        let (server, _client) = tokio::io::duplex(1024);
        let mut server = WriteLimited::new(server);
        let since = Instant::now();
        let error = tokio::time::timeout(WRITE_STALL_LIMIT * 10, server.write_all(&[0; ANSWER]))
            .await
            .expect("the write ends")
            .expect_err("nobody reads");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(since.elapsed(), WRITE_STALL_LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_taking_bytes_gets_everything() {
        let (server, mut client) = tokio::io::duplex(1024);
        let mut server = WriteLimited::new(server);
        let reader = async {
            let mut taken = 0;
            let mut chunk = [0u8; 1024];
            while taken < ANSWER {
                tokio::time::sleep(WRITE_STALL_LIMIT / 2).await;
                taken += client.read(&mut chunk).await.expect("read");
            }
            taken
        };
        let (written, taken) = tokio::time::timeout(WRITE_STALL_LIMIT * 100, async {
            tokio::join!(server.write_all(&[0; ANSWER]), reader)
        })
        .await
        .expect("every byte is taken in time");
        written.expect("a reader that keeps taking bytes is not cut");
        assert_eq!(taken, ANSWER);
    }
}
