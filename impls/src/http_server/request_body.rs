//! [`RequestBody`]: hyper's request body with a limit on silence.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

/// A request body that sends nothing for this long fails, and its connection closes. Why: a
/// client that announces a body and stalls would otherwise hold its connection's task and the
/// handler reading it for ever; the same limit as on a request head.
pub const BODY_SILENCE_LIMIT: Duration = Duration::from_secs(30);

/// The body of the requests [`serve`](super::serve) hands to its service: hyper's body, failing
/// with [`RequestBodyError::Silent`] when it goes [`BODY_SILENCE_LIMIT`] without a frame. A
/// body that keeps sending, however slowly, is not cut.
#[derive(Debug)]
pub struct RequestBody {
    inner: Incoming,
    /// Armed at the first wait for a frame and moved on at each frame; none while frames come
    /// at once, so a body that arrives with its head costs no timer.
    silence: Option<Pin<Box<Sleep>>>,
}

impl RequestBody {
    /// Wraps hyper's body.
    pub fn new(inner: Incoming) -> RequestBody {
        RequestBody {
            inner,
            silence: None,
        }
    }
}

/// Why a [`RequestBody`] failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestBodyError {
    /// The connection failed or closed midway (hyper's error).
    #[error(transparent)]
    Connection(#[from] hyper::Error),
    /// Nothing arrived for this long.
    #[error("the request body sent nothing for {0:?}")]
    Silent(Duration),
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(silence) = &mut this.silence {
                    silence.as_mut().reset(Instant::now() + BODY_SILENCE_LIMIT);
                }
                Poll::Ready(frame.map(|frame| frame.map_err(RequestBodyError::from)))
            }
            Poll::Pending => {
                let silence = this
                    .silence
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(BODY_SILENCE_LIMIT)));
                ready!(silence.as_mut().poll(cx));
                Poll::Ready(Some(Err(RequestBodyError::Silent(BODY_SILENCE_LIMIT))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
