//! Following a stream: catch-up then live, as an async `Stream` of chunks.
//!
//! The subscription remembers the offset after the last chunk it delivered and every request
//! (or SSE reconnect) starts there, so a lost connection or a server restart neither skips nor
//! repeats data. Failed requests are retried under the client's retry policy; a permanent
//! error (the stream was deleted, say) is delivered once and ends the subscription.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use bytes::{Bytes, BytesMut};
use courier_impls::retry::Retry;
use courier_traits::TransportError;
use courier_traits::transport::{Method, Request, ResponseBody};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};

use super::error::ClientError;
use super::streams_client::{MAX_BODY_BYTES, StreamsClient, check_offset, next_offset, path};
use crate::protocol;

/// How a subscription waits for new data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiveMode {
    /// Repeated `live=long-poll` requests.
    LongPoll,
    /// One `live=sse` response at a time (reconnected when the server ends it).
    Sse,
}

/// Data delivered by a subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// The bytes (for JSON streams, a JSON array of messages).
    pub data: Bytes,
    /// The offset after this chunk: resume from it.
    pub next_offset: String,
    /// True if the chunk reached the tail when it was sent.
    pub up_to_date: bool,
    /// True if the stream is closed and this is its last chunk.
    pub closed: bool,
}

/// Extra time over the server's long-poll timeout before a poll counts as lost.
const POLL_MARGIN: Duration = Duration::from_secs(10);

/// A live view of a stream: `Stream<Item = Result<Chunk, ClientError>>`. Ends when the stream
/// is closed, or after delivering a permanent error.
pub struct Subscription {
    chunks: BoxStream<'static, Result<Chunk, ClientError>>,
}

impl StreamsClient {
    /// Follows `stream` from `offset` (`None` = the start): every chunk stored after it, then
    /// live ones as they are appended, until the stream is closed (the `Stream` then ends).
    /// Lost connections are resumed from the last delivered offset under the retry policy.
    pub fn subscribe(&self, stream: &str, offset: Option<&str>, mode: LiveMode) -> Subscription {
        Subscription::new(self.clone(), stream, offset, mode)
    }
}

impl Subscription {
    pub(super) fn new(
        client: StreamsClient,
        stream: &str,
        offset: Option<&str>,
        mode: LiveMode,
    ) -> Subscription {
        let start = check_offset(offset).map(str::to_owned);
        let stream = stream.to_owned();
        let state = Follow {
            client,
            stream,
            offset: String::new(),
            cursor: None,
            mode,
            done: false,
            sse: None,
        };
        let chunks = match start {
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            Ok(start) => futures::stream::unfold(
                Follow {
                    offset: start,
                    ..state
                },
                |mut state| async move {
                    let item = state.next().await?;
                    Some((item, state))
                },
            )
            .boxed(),
        };
        Subscription { chunks }
    }
}

impl Stream for Subscription {
    type Item = Result<Chunk, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.chunks.poll_next_unpin(cx)
    }
}

/// The subscription's progress.
struct Follow {
    client: StreamsClient,
    stream: String,
    /// Where the next request starts: after the last delivered chunk.
    offset: String,
    cursor: Option<String>,
    mode: LiveMode,
    done: bool,
    sse: Option<SseConnection>,
}

impl Follow {
    async fn next(&mut self) -> Option<Result<Chunk, ClientError>> {
        if self.done {
            return None;
        }
        let item = match self.mode {
            LiveMode::LongPoll => self.next_polled().await,
            LiveMode::Sse => self.next_sse().await,
        };
        match &item {
            Some(Ok(chunk)) => self.done = chunk.closed,
            Some(Err(_)) | None => self.done = true,
        }
        item
    }

    fn target(&self, live: &str) -> Result<String, ClientError> {
        let mut target = format!("{}?offset={}&live={live}", path(&self.stream)?, self.offset);
        if let Some(cursor) = &self.cursor {
            target.push_str("&cursor=");
            target.push_str(cursor);
        }
        Ok(target)
    }

    async fn next_polled(&mut self) -> Option<Result<Chunk, ClientError>> {
        loop {
            let target = match self.target("long-poll") {
                Ok(t) => t,
                Err(e) => return Some(Err(e)),
            };
            let mut request = Request::new(Method::Get, target);
            request.timeout = Some(self.client.long_poll_timeout() + POLL_MARGIN);
            let retry = Retry::new(self.client.retry_policy());
            let response = retry
                .run(|_| self.client.send_once(&self.stream, request.clone()))
                .await
                .map_err(|e| {
                    e.into_last_error()
                        .unwrap_or(ClientError::Transport(TransportError::Closed))
                });
            let response = match response {
                Ok(r) => r,
                Err(e) => return Some(Err(e)),
            };
            if let Some(cursor) = response.header(protocol::CURSOR) {
                self.cursor = Some(cursor.to_owned());
            }
            let closed = response.header(protocol::CLOSED) == Some("true");
            let up_to_date = response.header(protocol::UP_TO_DATE) == Some("true");
            let next = match next_offset(&response) {
                Ok(n) => n,
                Err(e) => return Some(Err(e)),
            };
            if response.status == 204 {
                self.offset = next;
                if closed {
                    return None;
                }
                continue;
            }
            let data = match response.body.collect(MAX_BODY_BYTES).await {
                Ok(d) => d,
                // The body was lost mid-way: nothing delivered, poll again from the same offset.
                Err(e) => {
                    tracing::debug!(stream = %self.stream, error = %e, "long-poll body lost; polling again");
                    continue;
                }
            };
            self.offset = next.clone();
            if data.is_empty() && !closed {
                continue;
            }
            return Some(Ok(Chunk {
                data,
                next_offset: next,
                up_to_date,
                closed,
            }));
        }
    }

    async fn next_sse(&mut self) -> Option<Result<Chunk, ClientError>> {
        loop {
            if self.sse.is_none() {
                match self.open_sse().await {
                    Ok(connection) => self.sse = Some(connection),
                    Err(e) => return Some(Err(e)),
                }
            }
            let connection = self.sse.as_mut()?;
            match connection.next_event().await {
                Ok(Some(SseEvent::Data(payload))) => connection.add_data(payload),
                Ok(Some(SseEvent::Control(control))) => {
                    self.offset = control.next_offset.clone();
                    if control.cursor.is_some() {
                        self.cursor = control.cursor.clone();
                    }
                    let data = connection.take_data();
                    if !data.is_empty() || control.closed {
                        if control.closed {
                            self.sse = None;
                            if data.is_empty() {
                                return None;
                            }
                        }
                        return Some(Ok(Chunk {
                            data,
                            next_offset: control.next_offset,
                            up_to_date: control.up_to_date,
                            closed: control.closed,
                        }));
                    }
                }
                Ok(None) => self.sse = None, // the server ended the response: reconnect
                Err(e) => {
                    // Data without its control event is dropped: it is read again from the
                    // last confirmed offset.
                    tracing::debug!(stream = %self.stream, error = %e, "SSE connection lost; reconnecting");
                    self.sse = None;
                }
            }
        }
    }

    async fn open_sse(&mut self) -> Result<SseConnection, ClientError> {
        let target = self.target("sse")?;
        let retry = Retry::new(self.client.retry_policy());
        let response = retry
            .run(|_| async {
                let mut request = Request::new(Method::Get, target.clone());
                request.timeout = Some(POLL_MARGIN);
                self.client.send_once(&self.stream, request).await
            })
            .await
            .map_err(|e| {
                e.into_last_error()
                    .unwrap_or(ClientError::Transport(TransportError::Closed))
            })?;
        let base64 = response.header(protocol::SSE_DATA_ENCODING) == Some("base64");
        // Several data events before one control event are merged; for JSON streams that
        // means one array, which needs the stream's content type.
        let json = !base64 && self.client.head(&self.stream).await?.content_type == protocol::JSON;
        let body = match response.body {
            ResponseBody::Stream(s) => s,
            ResponseBody::Full(b) => futures::stream::once(async move { Ok(b) }).boxed(),
        };
        Ok(SseConnection {
            body,
            buffer: BytesMut::new(),
            base64,
            json,
            pending: Vec::new(),
        })
    }
}

/// A control event's fields.
struct Control {
    next_offset: String,
    cursor: Option<String>,
    up_to_date: bool,
    closed: bool,
}

enum SseEvent {
    Data(Bytes),
    Control(Control),
}

/// One open SSE response: a buffer of received bytes, and data awaiting its control event.
struct SseConnection {
    body: BoxStream<'static, Result<Bytes, TransportError>>,
    buffer: BytesMut,
    base64: bool,
    json: bool,
    pending: Vec<Bytes>,
}

impl SseConnection {
    /// The next complete event; `Ok(None)` when the response ends.
    async fn next_event(&mut self) -> Result<Option<SseEvent>, ClientError> {
        loop {
            if let Some(end) = find_event_end(&self.buffer) {
                let block = self.buffer.split_to(end.0 + end.1);
                if let Some(event) = self.parse(&block[..end.0])? {
                    return Ok(Some(event));
                }
                continue;
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(None),
            }
        }
    }

    fn parse(&self, block: &[u8]) -> Result<Option<SseEvent>, ClientError> {
        let text = std::str::from_utf8(block)
            .map_err(|_| ClientError::Protocol("SSE event is not UTF-8".into()))?;
        let mut kind = "message";
        let mut data: Vec<&str> = Vec::new();
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if let Some(value) = line.strip_prefix("event:") {
                kind = value.trim();
            } else if let Some(value) = line.strip_prefix("data:") {
                data.push(value.strip_prefix(' ').unwrap_or(value));
            }
        }
        let payload = data.join("\n");
        match kind {
            "data" => {
                let bytes = if self.base64 {
                    let compact: String = payload.split_whitespace().collect();
                    base64::engine::general_purpose::STANDARD
                        .decode(compact)
                        .map(Bytes::from)
                        .map_err(|e| {
                            ClientError::Protocol(format!("bad base64 in SSE data: {e}"))
                        })?
                } else {
                    Bytes::from(payload)
                };
                Ok(Some(SseEvent::Data(bytes)))
            }
            "control" => {
                let value: serde_json::Value = serde_json::from_str(&payload)
                    .map_err(|e| ClientError::Protocol(format!("bad SSE control event: {e}")))?;
                let next_offset = value["streamNextOffset"]
                    .as_str()
                    .ok_or_else(|| {
                        ClientError::Protocol("control event without streamNextOffset".into())
                    })?
                    .to_owned();
                Ok(Some(SseEvent::Control(Control {
                    next_offset,
                    cursor: value["streamCursor"].as_str().map(str::to_owned),
                    up_to_date: value["upToDate"].as_bool().unwrap_or(false),
                    closed: value["streamClosed"].as_bool().unwrap_or(false),
                })))
            }
            _ => Ok(None), // comments and unknown events
        }
    }

    fn add_data(&mut self, payload: Bytes) {
        self.pending.push(payload);
    }

    /// The data received since the last control event.
    fn take_data(&mut self) -> Bytes {
        let parts = std::mem::take(&mut self.pending);
        match parts.len() {
            0 => Bytes::new(),
            1 => parts.into_iter().next().unwrap_or_default(),
            _ if self.json => merge_json_arrays(&parts),
            _ => parts.concat().into(),
        }
    }
}

/// Where the first event of `buffer` ends: (length of the event, length of the blank line).
fn find_event_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Several JSON arrays as one.
fn merge_json_arrays(parts: &[Bytes]) -> Bytes {
    let mut out = Vec::new();
    for part in parts {
        let trimmed = part.trim_ascii();
        let inner = trimmed
            .strip_prefix(b"[")
            .and_then(|t| t.strip_suffix(b"]"))
            .unwrap_or(trimmed);
        if inner.trim_ascii().is_empty() {
            continue;
        }
        out.push(if out.is_empty() { b'[' } else { b',' });
        out.extend_from_slice(inner);
    }
    if out.is_empty() {
        out.push(b'[');
    }
    out.push(b']');
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_boundaries() {
        assert_eq!(find_event_end(b"event: a\ndata:x\n\nrest"), Some((15, 2)));
        assert_eq!(find_event_end(b"event: a\r\n\r\n"), Some((8, 4)));
        assert_eq!(find_event_end(b"event: a\n"), None);
    }

    #[test]
    fn json_arrays_merge() {
        let parts = [
            Bytes::from_static(b"[1,2]"),
            Bytes::from_static(b"[]"),
            Bytes::from_static(b"[3]"),
        ];
        assert_eq!(&merge_json_arrays(&parts)[..], b"[1,2,3]");
        assert_eq!(&merge_json_arrays(&[Bytes::from_static(b"[]")])[..], b"[]");
    }
}
