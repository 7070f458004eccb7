//! POST: append, close, or both atomically; idempotent producers and `Stream-Seq`.

use axum::BoxError;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use courier_traits::storage::AppendRequest;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::json;
use super::names;
use super::reply::{Failure, Reply};
use super::request::{self, header};
use super::state::AppState;
use crate::protocol;

/// Bodies smaller than this are copied out of the read buffer before they are stored.
const COPY_BELOW_BYTES: usize = 64 << 10;

pub(crate) async fn append(
    State(app): State<AppState>,
    Path(path): Path<String>,
    mut http_request: Request,
) -> Result<Response, Failure> {
    // The headers are moved out, not copied as the `HeaderMap` extractor does.
    let headers = std::mem::take(http_request.headers_mut());
    let limit = app.config().max_append_bytes;
    let body = match body_within(http_request.into_body(), limit).await {
        Ok(body) => body,
        Err(refusal) => return Ok(refusal),
    };
    let name = request::stream_name(&path)?;
    let producer = request::producer(&headers)?;
    let close = request::closed_flag(&headers);
    let writer_seq = header(&headers, &names::SEQ)?.map(str::to_owned);
    let mut append = if body.is_empty() {
        if !close {
            return Err(Failure::bad(
                "empty body: send data, or Stream-Closed: true to close the stream",
            ));
        }
        // Close-only: the content type is not checked.
        AppendRequest::close_only()
    } else {
        let Some(content_type) = request::content_type(&headers) else {
            return Err(Failure::bad("a body needs a Content-Type"));
        };
        // A small body is a slice of the connection's read buffer; storing it as is would pin
        // that whole buffer in an in-memory stream, so keep a copy of just its bytes.
        let body = if body.len() < COPY_BELOW_BYTES {
            Bytes::copy_from_slice(&body)
        } else {
            body
        };
        let records = if protocol::is_json(&content_type) {
            let messages = json::split_messages(&body)?;
            if messages.is_empty() {
                return Err(Failure::bad("an empty JSON array appends nothing"));
            }
            messages
        } else {
            vec![body]
        };
        let mut append = AppendRequest::records(records).with_content_type(content_type);
        append.close = close;
        append
    };
    append.producer = producer;
    append.writer_seq = writer_seq;
    // 200 only when a producer's data was written; close-only and duplicates are 204.
    let stamped_data = append.producer.is_some() && !append.records.is_empty();
    let has_records = !append.records.is_empty();
    let outcome = app.storage().append(&name, append).await?;
    if has_records && !outcome.duplicate {
        app.appended(&name, outcome.first_offset.clone());
    }
    let status = if stamped_data && !outcome.duplicate {
        StatusCode::OK
    } else {
        StatusCode::NO_CONTENT
    };
    let mut reply = Reply::new(status)
        .next_offset(&outcome.next_offset)
        .closed_if(outcome.closed);
    if let Some(ack) = outcome.producer {
        reply = reply
            .header(names::PRODUCER_EPOCH, ack.epoch.to_string())
            .header(names::PRODUCER_SEQ, ack.seq.to_string());
    }
    Ok(reply.into_response())
}

/// The whole body, at most `limit` bytes. Read here rather than by axum's `Bytes` extractor,
/// whose limit comes from a `DefaultBodyLimit` layer the server's hot routes skip; the
/// refusals are that extractor's (413 past the limit, 400 for a body cut off). A body that
/// arrives in one frame (any small one) is that frame's bytes: no buffer list, no copy.
async fn body_within(body: Body, limit: usize) -> Result<Bytes, Response> {
    let mut body = Limited::new(body, limit);
    let mut first = Bytes::new();
    let mut joined: Option<BytesMut> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(body_refusal)?;
        // Trailers are not part of the body.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        match &mut joined {
            Some(all) => all.extend_from_slice(&data),
            None if first.is_empty() => first = data,
            None => {
                let mut all = BytesMut::with_capacity(first.len() + data.len());
                all.extend_from_slice(&first);
                all.extend_from_slice(&data);
                joined = Some(all);
            }
        }
    }
    Ok(joined.map_or(first, BytesMut::freeze))
}

fn body_refusal(e: BoxError) -> Response {
    let status = if e.downcast_ref::<LengthLimitError>().is_some() {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::BAD_REQUEST
    };
    (status, format!("Failed to buffer the request body: {e}")).into_response()
}
