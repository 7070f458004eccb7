//! PUT: create a stream (idempotent), optionally closed, with initial data, or as a fork.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use bytes::Bytes;
use courier_traits::storage::{
    CreateOutcome, Expiry, ForkFrom, Offset, StreamConfig, StreamName, SubOffset,
};

use super::json;
use super::names;
use super::reply::{Failure, Operation, Reply};
use super::request::{self, header};
use super::state::AppState;
use crate::protocol;
use axum::response::IntoResponse;

pub(crate) async fn create(
    State(app): State<AppState>,
    Path(path): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    let name = request::stream_name(&path)?;
    let expiry = expiry(&headers)?;
    let closed = request::closed_flag(&headers);
    let fork = fork(&headers)?;
    let mut content_type = request::content_type(&headers);
    if content_type.is_none() && fork.is_none() {
        content_type = Some(courier_traits::storage::DEFAULT_CONTENT_TYPE.to_owned());
    }
    // A fork without a Content-Type inherits its source's, which decides how the body and a
    // sub-offset are read.
    let effective_type = match (&content_type, &fork) {
        (Some(ct), _) => ct.clone(),
        (None, Some(partial)) => {
            app.storage()
                .head(&partial.source)
                .await
                .map_err(|e| {
                    Failure::Storage(e.for_fork_source(&partial.source), Operation::Create)
                })?
                .content_type
        }
        (None, None) => courier_traits::storage::DEFAULT_CONTENT_TYPE.to_owned(),
    };
    let json_mode = protocol::is_json(&effective_type);
    let fork = fork.map(|f| f.resolve(json_mode));
    let initial = if json_mode {
        if body.is_empty() {
            Vec::new()
        } else {
            json::split_messages(&body)?
        }
    } else if body.is_empty() {
        Vec::new()
    } else {
        vec![body]
    };
    let initial_empty = initial.is_empty();
    let config = StreamConfig {
        content_type,
        expiry,
        closed,
        fork,
    };
    let outcome = app
        .storage()
        .create(&name, config, initial)
        .await
        .map_err(Failure::storage(Operation::Create))?;
    let (status, info) = match &outcome {
        CreateOutcome::Created(info) => (StatusCode::CREATED, info),
        CreateOutcome::AlreadyExists(info) => (StatusCode::OK, info),
    };
    if status == StatusCode::CREATED && !initial_empty {
        app.appended(&name, None);
    }
    let mut reply = Reply::new(status)
        .header(names::CONTENT_TYPE, &info.content_type)
        .next_offset(&info.next_offset)
        .closed_if(info.closed);
    if status == StatusCode::CREATED {
        reply = reply.header(names::LOCATION, location(&headers, &uri));
    }
    Ok(reply.into_response())
}

/// The absolute URL of the created stream.
fn location(headers: &HeaderMap, uri: &Uri) -> String {
    format!("{}{}", request::origin(headers), uri.path())
}

/// `Stream-TTL` or `Stream-Expires-At` (not both).
fn expiry(headers: &HeaderMap) -> Result<Expiry, Failure> {
    let ttl = header(headers, &names::TTL)?;
    let at = header(headers, &names::EXPIRES_AT)?;
    match (ttl, at) {
        (Some(_), Some(_)) => Err(Failure::bad(
            "Stream-TTL and Stream-Expires-At cannot both be set",
        )),
        (Some(ttl), None) => protocol::parse_strict_decimal(ttl.trim())
            .map(protocol::ttl_expiry)
            .ok_or_else(|| {
                Failure::bad(format!(
                    "Stream-TTL {ttl:?} must be a non-negative whole number of seconds"
                ))
            }),
        (None, Some(at)) => protocol::parse_expires_at(at)
            .map(Expiry::At)
            .ok_or_else(|| {
                Failure::bad(format!(
                    "Stream-Expires-At {at:?} is not an RFC 3339 timestamp"
                ))
            }),
        (None, None) => Ok(Expiry::Never),
    }
}

/// The fork headers, before the content type decides what a sub-offset counts.
struct PartialFork {
    source: StreamName,
    offset: Option<Offset>,
    sub_offset: u64,
}

impl PartialFork {
    fn resolve(self, json_mode: bool) -> ForkFrom {
        let sub_offset = match self.sub_offset {
            0 => SubOffset::None,
            n if json_mode => SubOffset::Records(n),
            n => SubOffset::Bytes(n),
        };
        ForkFrom {
            source: self.source,
            offset: self.offset,
            sub_offset,
        }
    }
}

fn fork(headers: &HeaderMap) -> Result<Option<PartialFork>, Failure> {
    let from = header(headers, &names::FORKED_FROM)?;
    let offset = header(headers, &names::FORK_OFFSET)?;
    let sub = header(headers, &names::FORK_SUB_OFFSET)?;
    let Some(from) = from else {
        if offset.is_some() || sub.is_some() {
            return Err(Failure::bad(
                "Stream-Fork-Offset and Stream-Fork-Sub-Offset need Stream-Forked-From",
            ));
        }
        return Ok(None);
    };
    let source = request::fork_source(from)?;
    let offset = offset
        .map(|o| {
            Offset::parse(o.trim())
                .map_err(|e| Failure::bad(format!("{}: {e}", protocol::FORK_OFFSET)))
        })
        .transpose()?;
    let sub_offset = match sub {
        None => 0,
        Some(text) => protocol::parse_strict_decimal(text.trim()).ok_or_else(|| {
            Failure::bad(format!(
                "Stream-Fork-Sub-Offset {text:?} must be a non-negative whole number"
            ))
        })?,
    };
    if sub_offset > 0 && offset.is_none() {
        return Err(Failure::bad(
            "Stream-Fork-Sub-Offset above 0 needs Stream-Fork-Offset",
        ));
    }
    Ok(Some(PartialFork {
        source,
        offset,
        sub_offset,
    }))
}
