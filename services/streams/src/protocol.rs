//! Names and value formats of the Durable Streams protocol, shared by the server and the client.

use std::time::{Duration, SystemTime};

use courier_traits::storage::Expiry;

/// The path under which streams live: `/v1/stream/<name>`.
pub const STREAM_PATH_PREFIX: &str = "/v1/stream/";
/// The default port of a standalone server.
pub const DEFAULT_PORT: u16 = 4437;

/// `Stream-Next-Offset`: where to read next.
pub const NEXT_OFFSET: &str = "stream-next-offset";
/// `Stream-Up-To-Date: true`: the response reached the tail.
pub const UP_TO_DATE: &str = "stream-up-to-date";
/// `Stream-Closed: true`: the stream is closed (and, on reads, fully read).
pub const CLOSED: &str = "stream-closed";
/// `Stream-Cursor`: the cache-busting cursor of live reads.
pub const CURSOR: &str = "stream-cursor";
/// `Stream-TTL`: idle time-to-live in seconds.
pub const TTL: &str = "stream-ttl";
/// `Stream-Expires-At`: absolute expiry (RFC 3339).
pub const EXPIRES_AT: &str = "stream-expires-at";
/// `Stream-Seq`: writer coordination sequence.
pub const SEQ: &str = "stream-seq";
/// `Stream-SSE-Data-Encoding: base64` on SSE responses of binary streams.
pub const SSE_DATA_ENCODING: &str = "stream-sse-data-encoding";
/// `Stream-Forked-From`: the source of a fork.
pub const FORKED_FROM: &str = "stream-forked-from";
/// `Stream-Fork-Offset`: the fork point.
pub const FORK_OFFSET: &str = "stream-fork-offset";
/// `Stream-Fork-Sub-Offset`: bytes or messages past the fork point.
pub const FORK_SUB_OFFSET: &str = "stream-fork-sub-offset";
/// `Producer-Id`.
pub const PRODUCER_ID: &str = "producer-id";
/// `Producer-Epoch`.
pub const PRODUCER_EPOCH: &str = "producer-epoch";
/// `Producer-Seq`.
pub const PRODUCER_SEQ: &str = "producer-seq";
/// `Producer-Expected-Seq` on a sequence gap.
pub const PRODUCER_EXPECTED_SEQ: &str = "producer-expected-seq";
/// `Producer-Received-Seq` on a sequence gap.
pub const PRODUCER_RECEIVED_SEQ: &str = "producer-received-seq";

/// The start-of-stream sentinel.
pub const OFFSET_START: &str = "-1";
/// The tail sentinel.
pub const OFFSET_NOW: &str = "now";

/// The JSON content type: appends are validated and arrays flattened into messages.
pub const JSON: &str = "application/json";

/// Normalises a `Content-Type` for comparison and storage: the media type, lower-cased,
/// without parameters. `None` if it does not look like `type/subtype`.
pub fn normalize_content_type(raw: &str) -> Option<String> {
    let media = raw.split(';').next().unwrap_or_default().trim();
    let (kind, sub) = media.split_once('/')?;
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    (token(kind) && token(sub)).then(|| media.to_ascii_lowercase())
}

/// True for JSON-mode streams.
pub fn is_json(content_type: &str) -> bool {
    content_type == JSON
}

/// True when SSE carries this content type as text; everything else is sent as base64.
pub fn is_sse_text(content_type: &str) -> bool {
    content_type.starts_with("text/") || is_json(content_type)
}

/// A presence flag such as `Stream-Closed`: set only by the value `true`, in any case.
pub fn flag_is_set(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Parses a strict non-negative decimal (no sign, no leading zero, no fraction), as used by
/// `Stream-TTL` and `Stream-Fork-Sub-Offset`.
pub fn parse_strict_decimal(text: &str) -> Option<u64> {
    let canonical = text == "0" || (!text.starts_with('0') && !text.is_empty());
    if !canonical || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Parses a producer number: decimal digits only, at most 2^53-1.
pub fn parse_producer_number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u64>()
        .ok()
        .filter(|&n| n <= courier_traits::storage::MAX_PRODUCER_NUMBER)
}

/// Parses `Stream-Expires-At` (RFC 3339, `Z` or numeric offset).
pub fn parse_expires_at(text: &str) -> Option<SystemTime> {
    let at =
        time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
            .ok()?;
    Some(SystemTime::from(at))
}

/// Formats an instant as RFC 3339 UTC, for `Stream-Expires-At`.
pub fn format_expires_at(at: SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The `Stream-TTL` / `Stream-Expires-At` header an expiry is reported with, if any.
pub fn expiry_header(expiry: Expiry) -> Option<(&'static str, String)> {
    match expiry {
        Expiry::Never => None,
        Expiry::Ttl(ttl) => Some((TTL, ttl.as_secs().to_string())),
        Expiry::At(at) => Some((EXPIRES_AT, format_expires_at(at))),
    }
}

/// The expiry a `Stream-TTL` value stands for.
pub fn ttl_expiry(seconds: u64) -> Expiry {
    Expiry::Ttl(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_normalise() {
        assert_eq!(
            normalize_content_type("APPLICATION/JSON; charset=utf-8").as_deref(),
            Some("application/json")
        );
        assert_eq!(
            normalize_content_type("text/plain").as_deref(),
            Some("text/plain")
        );
        assert_eq!(normalize_content_type("garbage"), None);
        assert_eq!(normalize_content_type("/x"), None);
    }

    #[test]
    fn strict_decimals() {
        assert_eq!(parse_strict_decimal("3600"), Some(3600));
        assert_eq!(parse_strict_decimal("0"), Some(0));
        for bad in ["+3600", "03600", "3600.0", "3.6e3", "-1", "abc", ""] {
            assert_eq!(parse_strict_decimal(bad), None, "{bad}");
        }
    }

    #[test]
    fn producer_numbers() {
        assert_eq!(parse_producer_number("0"), Some(0));
        assert_eq!(
            parse_producer_number("9007199254740991"),
            Some((1 << 53) - 1)
        );
        for bad in ["9007199254740992", "1abc", "1e3", "-1", ""] {
            assert_eq!(parse_producer_number(bad), None, "{bad}");
        }
    }

    #[test]
    fn flags_and_times() {
        assert!(flag_is_set(Some("TRUE")));
        assert!(!flag_is_set(Some("1")));
        assert!(!flag_is_set(None));
        let at = parse_expires_at("2030-01-01T00:00:00+02:00").expect("valid");
        assert_eq!(format_expires_at(at), "2029-12-31T22:00:00Z");
        assert!(parse_expires_at("tomorrow").is_none());
    }
}
