//! GET: catch-up reads and long-polls (SSE lives in `sse.rs`).

use std::io::Write;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use courier_traits::storage::{ReadBatch, ReadLimits, StreamName, WaitOutcome};

use super::caching::{self, CACHEABLE, NO_CACHE, NO_STORE};
use super::first_batch::first_batch;
use super::json;
use super::names;
use super::reply::{Failure, Reply};
use super::request::{self, LiveMode, ReadQuery, StartAt};
use super::sse;
use super::state::AppState;
use crate::protocol;

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

/// `offset=now` without a live mode: no data, just the tail.
async fn at_tail(app: &AppState, name: &StreamName) -> Result<Response, Failure> {
    let info = app.storage().head(name).await?;
    // A read at the tail is still a read: it resets the stream's idle TTL.
    let probe = ReadLimits {
        max_records: 1,
        max_bytes: 1,
    };
    app.storage()
        .read(name, Some(info.next_offset.clone()), probe)
        .await?;
    let body = if protocol::is_json(&info.content_type) {
        "[]"
    } else {
        ""
    };
    Ok(Reply::new(StatusCode::OK)
        .header(names::CONTENT_TYPE, &info.content_type)
        .next_offset(&info.next_offset)
        .up_to_date_if(true)
        .closed_if(info.closed)
        .static_header(names::CACHE_CONTROL, NO_STORE)
        .body(body)
        .into_response())
}

async fn catch_up(
    app: &AppState,
    name: &StreamName,
    query: &ReadQuery,
    headers: &HeaderMap,
) -> Result<Response, Failure> {
    let batch = first_batch(app, name, &query.start).await?;
    Ok(data_reply(&batch, query, headers, None))
}

/// A 200 with the batch's data and the protocol headers (or a 304 if the client has it).
fn data_reply(
    batch: &ReadBatch,
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
    let mut reply = Reply::new(StatusCode::OK)
        .header(names::CONTENT_TYPE, &batch.content_type)
        .next_offset(&batch.next_offset)
        .up_to_date_if(batch.up_to_date)
        .closed_if(batch.closed)
        .header(names::ETAG, &etag)
        .static_header(names::CACHE_CONTROL, cache);
    if let Some(cursor) = cursor {
        reply = reply.header(names::CURSOR, cursor);
    }
    if caching::not_modified(headers, &etag) {
        return with_status(reply.into_response(), StatusCode::NOT_MODIFIED);
    }
    let body = if protocol::is_json(&batch.content_type) {
        json::render_array(&batch.records)
    } else {
        json::concat(&batch.records)
    };
    match gzip_if_accepted(headers, &body) {
        Some(compressed) => reply
            .static_header(names::CONTENT_ENCODING, "gzip")
            .static_header(names::VARY, "accept-encoding")
            .body(compressed)
            .into_response(),
        None => reply.body(body).into_response(),
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
    let batch = first_batch(app, name, &query.start).await?;
    if let Some(done) = live_answer(&batch, query, headers) {
        return Ok(done);
    }
    let waited = tokio::select! {
        waited = app.storage().wait(name, &batch.next_offset, app.config().long_poll_timeout) => waited?,
        // Shutting down: answer as if the poll timed out, so the client polls the next server.
        () = app.shutdown().cancelled() => WaitOutcome::TimedOut,
    };
    if waited != WaitOutcome::TimedOut {
        let next = app
            .storage()
            .read(
                name,
                Some(batch.next_offset.clone()),
                app.config().read_limits,
            )
            .await?;
        if let Some(done) = live_answer(&next, query, headers) {
            return Ok(done);
        }
    }
    Ok(Reply::new(StatusCode::NO_CONTENT)
        .next_offset(&batch.next_offset)
        .up_to_date_if(true)
        .header(names::CURSOR, caching::next_cursor(query.cursor.as_deref()))
        .static_header(names::CACHE_CONTROL, NO_STORE)
        .into_response())
}

/// The answer of a long-poll that need not wait: data, or the end of a closed stream.
fn live_answer(batch: &ReadBatch, query: &ReadQuery, headers: &HeaderMap) -> Option<Response> {
    if !batch.records.is_empty() {
        let cursor = (!batch.closed).then(|| caching::next_cursor(query.cursor.as_deref()));
        return Some(data_reply(batch, query, headers, cursor));
    }
    batch.closed.then(|| {
        Reply::new(StatusCode::NO_CONTENT)
            .next_offset(&batch.next_offset)
            .up_to_date_if(true)
            .closed_if(true)
            .static_header(names::CACHE_CONTROL, NO_STORE)
            .into_response()
    })
}
