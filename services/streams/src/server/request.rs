//! Reading what a request asks for: stream name, protocol headers, query parameters.

use axum::http::{HeaderMap, HeaderName};
use courier_traits::storage::{Offset, ProducerStamp, StreamName};

use super::names;
use super::reply::Failure;
use crate::protocol;

/// The first path segment reserved for control APIs.
const RESERVED_SEGMENT: &str = "__ds";

/// Whether a stream name lies under the reserved segment (subscription logs, the signing
/// key): no client request may read, write or aim a subscription at one.
pub(crate) fn is_reserved(name: &str) -> bool {
    name == RESERVED_SEGMENT || name.starts_with("__ds/")
}

/// The stream a path names (the part after `/v1/stream/`).
pub(crate) fn stream_name(path: &str) -> Result<StreamName, Failure> {
    if is_reserved(path) {
        return Err(Failure::NotFound(format!(
            "{RESERVED_SEGMENT}/ is reserved for control APIs this server does not offer"
        )));
    }
    Ok(StreamName::new(path)?)
}

/// The server's origin as the client addressed it (`scheme://host`), from `Host` and an
/// `X-Forwarded-Proto: https` set by a TLS-terminating proxy.
pub(crate) fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https")
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

/// The stream a `Stream-Forked-From` value names: a path on this server (`/v1/stream/a`), an
/// absolute URL of one, or a bare name.
pub(crate) fn fork_source(value: &str) -> Result<StreamName, Failure> {
    let value = value.trim();
    let path = match value.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
        None => value,
    };
    let name = path
        .strip_prefix(protocol::STREAM_PATH_PREFIX)
        .unwrap_or(path.trim_start_matches('/'));
    // The reserved streams (subscription state, the signing key) are not forked into view.
    if is_reserved(name) {
        return Err(Failure::bad(format!(
            "{}: {RESERVED_SEGMENT}/ streams are reserved",
            protocol::FORKED_FROM
        )));
    }
    StreamName::new(name).map_err(|e| Failure::bad(format!("{}: {e}", protocol::FORKED_FROM)))
}

/// A header's value as text; a value that is not visible ASCII is a bad request. The name is
/// a [`HeaderName`] constant: looking a header up by `&str` parses the name on every call.
pub(crate) fn header<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a str>, Failure> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| Failure::bad(format!("header {name} is not valid text"))),
    }
}

/// The normalised `Content-Type` of the request, if it has a parseable one.
pub(crate) fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(names::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(protocol::normalize_content_type)
}

/// True if the request sets `Stream-Closed: true`.
pub(crate) fn closed_flag(headers: &HeaderMap) -> bool {
    protocol::flag_is_set(headers.get(names::CLOSED).and_then(|v| v.to_str().ok()))
}

/// The producer stamp: all three producer headers, or none.
pub(crate) fn producer(headers: &HeaderMap) -> Result<Option<ProducerStamp>, Failure> {
    let id = header(headers, &names::PRODUCER_ID)?;
    let epoch = header(headers, &names::PRODUCER_EPOCH)?;
    let seq = header(headers, &names::PRODUCER_SEQ)?;
    match (id, epoch, seq) {
        (None, None, None) => Ok(None),
        (Some(id), Some(epoch), Some(seq)) => {
            let number = |name: &str, text: &str| {
                protocol::parse_producer_number(text).ok_or_else(|| {
                    Failure::bad(format!(
                        "{name} {text:?} must be a decimal integer between 0 and 2^53-1"
                    ))
                })
            };
            let epoch = number(protocol::PRODUCER_EPOCH, epoch)?;
            let seq = number(protocol::PRODUCER_SEQ, seq)?;
            Ok(Some(ProducerStamp::new(id, epoch, seq)?))
        }
        _ => Err(Failure::bad(
            "Producer-Id, Producer-Epoch and Producer-Seq must be sent together",
        )),
    }
}

/// Where a read starts, as the client named it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StartAt {
    /// The beginning (`-1` or no `offset`).
    Start,
    /// The current tail (`now`).
    Now,
    /// After this offset.
    After(Offset),
}

impl StartAt {
    /// The offset text as the client sent it (for ETags).
    pub(crate) fn as_text(&self) -> &str {
        match self {
            StartAt::Start => protocol::OFFSET_START,
            StartAt::Now => protocol::OFFSET_NOW,
            StartAt::After(o) => o.as_str(),
        }
    }
}

/// How a GET wants to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LiveMode {
    CatchUp,
    LongPoll,
    Sse,
}

/// The query parameters of a GET.
#[derive(Debug)]
pub(crate) struct ReadQuery {
    pub(crate) start: StartAt,
    pub(crate) live: LiveMode,
    pub(crate) cursor: Option<String>,
}

impl ReadQuery {
    /// Parses the query string. Unknown parameters are ignored; `offset` must appear at most
    /// once, be non-empty and be a sentinel or a well-formed offset; live modes need it.
    pub(crate) fn parse(query: Option<&str>) -> Result<ReadQuery, Failure> {
        // Borrowed from the query unless it had escapes.
        let mut offset: Option<std::borrow::Cow<'_, str>> = None;
        let mut live = LiveMode::CatchUp;
        let mut cursor = None;
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match &*key {
                "offset" => {
                    if offset.is_some() {
                        return Err(Failure::bad("offset given more than once"));
                    }
                    offset = Some(value);
                }
                "live" => {
                    live = match &*value {
                        "long-poll" => LiveMode::LongPoll,
                        "sse" => LiveMode::Sse,
                        _ => LiveMode::CatchUp,
                    }
                }
                "cursor" => cursor = Some(value.into_owned()),
                _ => {}
            }
        }
        let start = match offset.as_deref() {
            None if live != LiveMode::CatchUp => {
                return Err(Failure::bad("live reads need an offset parameter"));
            }
            None | Some(protocol::OFFSET_START) => StartAt::Start,
            Some(protocol::OFFSET_NOW) => StartAt::Now,
            Some(text) => StartAt::After(Offset::parse(text)?),
        };
        Ok(ReadQuery {
            start,
            live,
            cursor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        let q = ReadQuery::parse(Some("offset=-1&foo=bar")).expect("valid");
        assert_eq!(q.start, StartAt::Start);
        assert_eq!(q.live, LiveMode::CatchUp);
        let q = ReadQuery::parse(Some("live=sse&offset=now&cursor=7")).expect("valid");
        assert_eq!(
            (q.start, q.live, q.cursor.as_deref()),
            (StartAt::Now, LiveMode::Sse, Some("7"))
        );
        for bad in [
            "offset=",
            "offset=a&offset=b",
            "offset=0,1",
            "offset=0%201",
            "live=long-poll",
        ] {
            assert!(ReadQuery::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn fork_sources() {
        for value in ["/v1/stream/a/b", "http://h:1/v1/stream/a/b", "a/b"] {
            assert_eq!(fork_source(value).expect("valid").as_str(), "a/b");
        }
        assert!(fork_source("/v1/stream/").is_err());
    }

    #[test]
    fn reserved_names() {
        assert!(matches!(
            stream_name("__ds/subscriptions/x"),
            Err(Failure::NotFound(_))
        ));
        assert!(stream_name("__dsx").is_ok());
    }
}
