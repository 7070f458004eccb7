//! GET `live=sse`: catch-up then live data as Server-Sent Events.
//!
//! Every `data` event (one per stored batch) is followed by a `control` event carrying the
//! next offset, so a client that disconnects after any event resumes exactly. Binary streams
//! are sent as base64; text and JSON as text, every line break of the payload starting a new
//! `data:` line so that payload bytes can never forge an event boundary.

use std::convert::Infallible;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use courier_traits::storage::{Joining, Offset, ReadBatch, StreamName, WaitOutcome};
use tokio::time::Instant;

use super::caching::{self, NO_CACHE};
use super::first_batch::first_batch;
use super::json;
use super::names;
use super::reply::{Failure, Reply};
use super::request::ReadQuery;
use super::state::AppState;
use crate::protocol;

pub(crate) async fn open(
    app: AppState,
    name: StreamName,
    query: ReadQuery,
) -> Result<Response, Failure> {
    // The first read runs before the 200 goes out, so a missing stream is a plain 404.
    let first = first_batch(&app, &name, &query.start).await?;
    let content_type = first.content_type.clone();
    let base64 = !protocol::is_sse_text(&content_type);
    let deadline = Instant::now() + app.config().sse_reconnect_interval;
    let session = Session {
        app,
        name,
        json: protocol::is_json(&content_type),
        base64,
        cursor: query.cursor,
        pending: Some(first),
        offset: None,
        deadline,
        done: false,
    };
    let events = futures::stream::unfold(session, |mut session| async move {
        let chunk = session.next_chunk().await?;
        Some((Ok::<Bytes, Infallible>(chunk), session))
    });
    let mut reply = Reply::new(StatusCode::OK)
        .static_header(names::CONTENT_TYPE, "text/event-stream")
        .static_header(names::CACHE_CONTROL, NO_CACHE)
        .static_header(names::X_ACCEL_BUFFERING, "no");
    if base64 {
        reply = reply.static_header(names::SSE_DATA_ENCODING, "base64");
    }
    Ok(reply.body(Body::from_stream(events)).into_response())
}

/// One SSE response's progress.
struct Session {
    app: AppState,
    name: StreamName,
    json: bool,
    base64: bool,
    cursor: Option<String>,
    /// A batch read but not yet sent (the first read, made before the response started).
    pending: Option<ReadBatch>,
    /// Where the next read starts.
    offset: Option<Offset>,
    /// When to end the response so the client reconnects (lets caches and proxies rotate).
    deadline: Instant,
    done: bool,
}

impl Session {
    /// The next events to send, or `None` to end the response.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let mut first_at_tail = self.pending.is_some();
        loop {
            let batch = match self.pending.take() {
                Some(batch) => batch,
                None => {
                    let limits = self.app.config().read_limits;
                    match self
                        .app
                        .storage()
                        .read(&self.name, self.offset.clone(), limits)
                        .await
                    {
                        Ok(batch) => batch,
                        Err(e) => {
                            tracing::debug!(stream = %self.name, error = %e, "SSE read ended");
                            return None;
                        }
                    }
                }
            };
            self.offset = Some(batch.next_offset.clone());
            if !batch.records.is_empty() {
                let mut out = BytesMut::new();
                self.data_event(&batch, &mut out);
                self.control_event(&batch.next_offset, batch.up_to_date, batch.closed, &mut out);
                self.done = batch.closed;
                return Some(out.freeze());
            }
            if batch.closed || first_at_tail {
                // At the tail on connect (say where it is), or closed (the final control).
                let mut out = BytesMut::new();
                self.control_event(&batch.next_offset, true, batch.closed, &mut out);
                self.done = batch.closed;
                return Some(out.freeze());
            }
            first_at_tail = false;
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let timeout = self.app.config().long_poll_timeout.min(left);
            let waited = tokio::select! {
                waited = self.app.storage().wait(&self.name, &batch.next_offset, timeout) => waited,
                () = self.app.shutdown().cancelled() => return None,
            };
            match waited {
                Ok(WaitOutcome::Ready | WaitOutcome::Closed) => continue,
                Ok(WaitOutcome::TimedOut) => {
                    if Instant::now() >= self.deadline {
                        return None;
                    }
                    // Idle: a keep-alive control with a fresh cursor.
                    let mut out = BytesMut::new();
                    self.control_event(&batch.next_offset, true, false, &mut out);
                    return Some(out.freeze());
                }
                Err(e) => {
                    tracing::debug!(stream = %self.name, error = %e, "SSE wait ended");
                    return None;
                }
            }
        }
    }

    fn data_event(&self, batch: &ReadBatch, out: &mut BytesMut) {
        let joining = if self.json {
            Joining::JsonArray
        } else {
            Joining::Concat
        };
        let payload = json::body(&batch.records, joining);
        out.put_slice(b"event: data\n");
        if self.base64 {
            out.put_slice(b"data:");
            out.put_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(&payload)
                    .as_bytes(),
            );
            out.put_u8(b'\n');
        } else {
            put_data_lines(&payload, out);
        }
        out.put_u8(b'\n');
    }

    fn control_event(&mut self, next: &Offset, up_to_date: bool, closed: bool, out: &mut BytesMut) {
        let mut control = serde_json::Map::new();
        control.insert("streamNextOffset".into(), next.as_str().into());
        if !closed {
            let cursor = caching::next_cursor(self.cursor.as_deref());
            control.insert("streamCursor".into(), cursor.clone().into());
            self.cursor = Some(cursor);
        }
        if up_to_date {
            control.insert("upToDate".into(), true.into());
        }
        if closed {
            control.insert("streamClosed".into(), true.into());
        }
        out.put_slice(b"event: control\ndata:");
        out.put_slice(serde_json::Value::Object(control).to_string().as_bytes());
        out.put_slice(b"\n\n");
    }
}

/// Writes `payload` as `data:` lines, splitting at CRLF, CR and LF.
///
/// `data:` is followed directly by the line; a line that itself starts with a space gets one
/// extra space, because SSE parsers strip exactly one after the colon.
fn put_data_lines(payload: &[u8], out: &mut BytesMut) {
    let mut rest = payload;
    loop {
        let end = rest.iter().position(|&b| b == b'\n' || b == b'\r');
        out.put_slice(b"data:");
        if rest.first() == Some(&b' ') {
            out.put_u8(b' ');
        }
        match end {
            None => {
                out.put_slice(rest);
                out.put_u8(b'\n');
                return;
            }
            Some(i) => {
                out.put_slice(&rest[..i]);
                out.put_u8(b'\n');
                let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                rest = &rest[i + skip..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(payload: &str) -> String {
        let mut out = BytesMut::new();
        put_data_lines(payload.as_bytes(), &mut out);
        String::from_utf8(out.to_vec()).expect("utf8")
    }

    #[test]
    fn payload_line_breaks_cannot_forge_events() {
        assert_eq!(lines("a"), "data:a\n");
        assert_eq!(lines("a\n\nevent: x"), "data:a\ndata:\ndata:event: x\n");
        assert_eq!(lines("a\r\nb\rc"), "data:a\ndata:b\ndata:c\n");
        assert_eq!(lines(""), "data:\n");
        assert_eq!(lines("a\n"), "data:a\ndata:\n");
        assert_eq!(lines(" a\n  b"), "data:  a\ndata:   b\n");
    }
}
