//! ETags, `Cache-Control` values and live-read cursors.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use courier_traits::storage::Offset;
use rand::Rng;

/// Cache-Control of reads whose content can never change (historical ranges, closed tails).
pub(crate) const CACHEABLE: &str = "public, max-age=60, stale-while-revalidate=300";
/// Cache-Control of responses that describe the moving tail.
pub(crate) const NO_STORE: &str = "no-store";
/// Cache-Control of SSE and of tail reads that a cache must revalidate.
pub(crate) const NO_CACHE: &str = "no-cache";

/// The ETag of a read: the range it covers, and whether the stream was closed at its end.
pub(crate) fn etag(start: &str, end: &Offset, closed: bool) -> String {
    let suffix = if closed { ":c" } else { "" };
    let end = end.as_str();
    // Sized once: `format!` grows its buffer as it goes, and the header value takes this
    // buffer as it is (no copy) only when it is full.
    let mut tag = String::with_capacity(start.len() + end.len() + suffix.len() + 3);
    for part in ["\"", start, ":", end, suffix, "\""] {
        tag.push_str(part);
    }
    tag
}

/// True if `If-None-Match` names `etag` (or is `*`).
pub(crate) fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all("if-none-match")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

/// Seconds since the Unix epoch of the cursor epoch, 2024-10-09T00:00:00Z.
const CURSOR_EPOCH_SECS: u64 = 1_728_432_000;
/// Length of one cursor interval.
const CURSOR_INTERVAL_SECS: u64 = 20;
/// Most intervals of jitter added when a client's cursor is not behind (one hour).
const MAX_JITTER_INTERVALS: u64 = 3600 / CURSOR_INTERVAL_SECS;

/// The cursor of a live response: the current interval number, or, when the client's cursor
/// is not behind it, the client's plus a random jitter, so cursors keep increasing and a CDN
/// cannot collapse successive polls into one cached answer.
pub(crate) fn next_cursor(client: Option<&str>) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let current = now.saturating_sub(CURSOR_EPOCH_SECS) / CURSOR_INTERVAL_SECS;
    match client.and_then(|c| c.parse::<u64>().ok()) {
        Some(theirs) if theirs >= current => {
            let jitter = rand::rng().random_range(1..=MAX_JITTER_INTERVALS);
            theirs.saturating_add(jitter).to_string()
        }
        _ => current.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn cursors_increase() {
        let now: u64 = next_cursor(None).parse().expect("number");
        assert!(now > 0);
        let later: u64 = next_cursor(Some(&now.to_string())).parse().expect("number");
        assert!(later > now && later <= now + MAX_JITTER_INTERVALS);
        assert_eq!(next_cursor(Some("3")), now.to_string());
        assert_eq!(next_cursor(Some("junk")), now.to_string());
    }

    #[test]
    fn etags_match() {
        let end = Offset::parse("0001").expect("valid");
        let tag = etag("-1", &end, false);
        assert_eq!(tag, "\"-1:0001\"");
        assert_ne!(tag, etag("-1", &end, true));
        let mut headers = HeaderMap::new();
        headers.insert(
            "if-none-match",
            HeaderValue::from_static("\"x\", \"-1:0001\""),
        );
        assert!(not_modified(&headers, &tag));
        assert!(!not_modified(&HeaderMap::new(), &tag));
    }
}
