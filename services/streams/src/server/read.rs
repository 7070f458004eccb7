//! GET: catch-up reads and long-polls (SSE lives in `sse.rs`).

use std::io::Write;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use courier_traits::storage::{JoinedBatch, ReadFrom, ReadLimits, StreamName, WaitOutcome};

use super::caching::{self, CACHEABLE, NO_CACHE, NO_STORE};
use super::json;
use super::names;
use super::reply::{Failure, Reply};
use super::request::{self, LiveMode, ReadQuery, StartAt};
use super::sse;
use super::state::AppState;

/// Bodies at least this large are gzip-compressed for clients that accept it.
const COMPRESS_FROM_BYTES: usize = 1024;

pub(crate) async fn read(
    State(app): State<AppState>,
    Path(path): Path<String>,
    // The whole request rather than the `Uri` and `HeaderMap` extractors, which copy them.
    http_request: Request,
) -> Result<Response, Failure> {
    let name = request::stream_name(&path)?;
    let query = ReadQuery::parse(http_request.uri().query())?;
    let headers = http_request.headers();
    match query.live {
        LiveMode::CatchUp if query.start == StartAt::Now => at_tail(&app, &name).await,
        LiveMode::CatchUp => catch_up(&app, &name, &query, headers).await,
        LiveMode::LongPoll => long_poll(&app, &name, &query, headers).await,
        LiveMode::Sse => sse::open(app, name, query).await,
    }
}

/// `offset=now` without a live mode: no data, just the tail (empty body, up to date), in one
/// storage call, which also resets the stream's idle TTL (a read at the tail is still a read).
async fn at_tail(app: &AppState, name: &StreamName) -> Result<Response, Failure> {
    // Not 0 records: some backends read a count of 0 as "no limit".
    let at_most_one = ReadLimits {
        max_records: 1,
        max_bytes: 1,
    };
    let tail = app
        .storage()
        .read_joined(name, ReadFrom::Tail, at_most_one, json::joining)
        .await?;
    Ok(Reply::new(StatusCode::OK)
        .content_type(&tail.content_type)
        .next_offset(&tail.next_offset)
        .up_to_date_if(tail.up_to_date)
        .closed_if(tail.closed)
        .static_header(names::CACHE_CONTROL, NO_STORE)
        .bytes_body(tail.body)
        .into_response())
}

async fn catch_up(
    app: &AppState,
    name: &StreamName,
    query: &ReadQuery,
    headers: &HeaderMap,
) -> Result<Response, Failure> {
    let batch = read_joined(app, name, &query.start).await?;
    Ok(data_reply(batch, query, headers, None))
}

/// A read from where the client asked, joined into one body.
async fn read_joined(
    app: &AppState,
    name: &StreamName,
    start: &StartAt,
) -> Result<JoinedBatch, Failure> {
    let from = match start {
        StartAt::Start => ReadFrom::Start,
        StartAt::After(offset) => ReadFrom::After(offset.clone()),
        StartAt::Now => ReadFrom::Tail,
    };
    Ok(app
        .storage()
        .read_joined(name, from, app.config().read_limits, json::joining)
        .await?)
}

/// A 200 with the batch's data and the protocol headers (or a 304 if the client has it).
fn data_reply(
    batch: JoinedBatch,
    query: &ReadQuery,
    headers: &HeaderMap,
    cursor: Option<String>,
) -> Response {
    let etag = caching::etag(query.start.as_text(), &batch.next_offset, batch.closed);
    // The tail of an open stream moves: caches must revalidate it. Anything else is immutable.
    let cache = if batch.up_to_date && !batch.closed {
        NO_CACHE
    } else {
        CACHEABLE
    };
    let not_modified = caching::not_modified(headers, &etag);
    let mut reply = Reply::new(StatusCode::OK)
        .content_type(&batch.content_type)
        .next_offset(&batch.next_offset)
        .up_to_date_if(batch.up_to_date)
        .closed_if(batch.closed)
        .owned_header(names::ETAG, etag)
        .static_header(names::CACHE_CONTROL, cache);
    if let Some(cursor) = cursor {
        reply = reply.header(names::CURSOR, cursor);
    }
    if not_modified {
        return with_status(reply.into_response(), StatusCode::NOT_MODIFIED);
    }
    match gzip_if_accepted(headers, &batch.body) {
        Some(compressed) => reply
            .static_header(names::CONTENT_ENCODING, "gzip")
            .static_header(names::VARY, "accept-encoding")
            .body(compressed)
            .into_response(),
        None => reply.bytes_body(batch.body).into_response(),
    }
}

fn with_status(mut response: Response, status: StatusCode) -> Response {
    *response.status_mut() = status;
    response
}

/// The body gzip-compressed, if the client accepts gzip and the body is worth it.
fn gzip_if_accepted(headers: &HeaderMap, body: &Bytes) -> Option<Bytes> {
    if body.len() < COMPRESS_FROM_BYTES {
        return None;
    }
    let accepts = headers
        .get_all("accept-encoding")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or_default().trim();
            let refused = parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            name.eq_ignore_ascii_case("gzip") && !refused
        });
    if !accepts {
        return None;
    }
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 2),
        flate2::Compression::fast(),
    );
    encoder.write_all(body).ok()?;
    encoder.finish().ok().map(Bytes::from)
}

async fn long_poll(
    app: &AppState,
    name: &StreamName,
    query: &ReadQuery,
    headers: &HeaderMap,
) -> Result<Response, Failure> {
    let batch = read_joined(app, name, &query.start).await?;
    let batch = match live_answer(batch, query, headers) {
        LiveAnswer::Done(response) => return Ok(response),
        LiveAnswer::Wait(empty) => empty,
    };
    let waited = tokio::select! {
        waited = app.storage().wait(name, &batch.next_offset, app.config().long_poll_timeout) => waited?,
        // Shutting down: answer as if the poll timed out, so the client polls the next server.
        () = app.shutdown().cancelled() => WaitOutcome::TimedOut,
    };
    if waited != WaitOutcome::TimedOut {
        let from = StartAt::After(batch.next_offset.clone());
        let next = read_joined(app, name, &from).await?;
        if let LiveAnswer::Done(response) = live_answer(next, query, headers) {
            return Ok(response);
        }
    }
    Ok(Reply::new(StatusCode::NO_CONTENT)
        .next_offset(&batch.next_offset)
        .up_to_date_if(true)
        .header(names::CURSOR, caching::next_cursor(query.cursor.as_deref()))
        .static_header(names::CACHE_CONTROL, NO_STORE)
        .into_response())
}

/// What a long-poll's read leads to.
enum LiveAnswer {
    /// The answer: data, or the end of a closed stream.
    Done(Response),
    /// Nothing yet: wait after this empty batch.
    Wait(JoinedBatch),
}

fn live_answer(batch: JoinedBatch, query: &ReadQuery, headers: &HeaderMap) -> LiveAnswer {
    if batch.records > 0 {
        let cursor = (!batch.closed).then(|| caching::next_cursor(query.cursor.as_deref()));
        return LiveAnswer::Done(data_reply(batch, query, headers, cursor));
    }
    if !batch.closed {
        return LiveAnswer::Wait(batch);
    }
    LiveAnswer::Done(
        Reply::new(StatusCode::NO_CONTENT)
            .next_offset(&batch.next_offset)
            .up_to_date_if(true)
            .closed_if(true)
            .static_header(names::CACHE_CONTROL, NO_STORE)
            .into_response(),
    )
}
