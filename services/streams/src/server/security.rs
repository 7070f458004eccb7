//! Headers every response carries: browser security and CORS (added by [`super::edge`]).

use axum::http::HeaderValue;
use axum::response::Response;

use super::names;

const EXPOSED: &str = "stream-next-offset, stream-up-to-date, stream-closed, stream-cursor, \
stream-ttl, stream-expires-at, stream-sse-data-encoding, producer-epoch, producer-seq, \
producer-expected-seq, producer-received-seq, etag, content-type, content-encoding, vary, location";

const ALLOWED_HEADERS: &str = "content-type, if-none-match, stream-ttl, stream-expires-at, \
stream-closed, stream-seq, stream-forked-from, stream-fork-offset, stream-fork-sub-offset, \
producer-id, producer-epoch, producer-seq, authorization, accept-encoding";

const ALLOWED_METHODS: &str = "GET, POST, PUT, DELETE, HEAD, OPTIONS";

// Built at compile time: `HeaderValue::from_static` checks every byte of its text, which
// at run time (EXPOSED is ~280 bytes) was the most expensive of this crate's own work on an
// append.
const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");
const CROSS_ORIGIN: HeaderValue = HeaderValue::from_static("cross-origin");
const ANY_ORIGIN: HeaderValue = HeaderValue::from_static("*");
const EXPOSED_VALUE: HeaderValue = HeaderValue::from_static(EXPOSED);
const ALLOWED_METHODS_VALUE: HeaderValue = HeaderValue::from_static(ALLOWED_METHODS);
const ALLOWED_HEADERS_VALUE: HeaderValue = HeaderValue::from_static(ALLOWED_HEADERS);
const MAX_AGE_VALUE: HeaderValue = HeaderValue::from_static("86400");

/// Adds `X-Content-Type-Options`, `Cross-Origin-Resource-Policy` and the CORS headers.
pub(crate) fn with_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(names::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
    headers.insert(names::CROSS_ORIGIN_RESOURCE_POLICY, CROSS_ORIGIN);
    headers.insert(names::ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
    headers.insert(names::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED_VALUE);
    response
}

/// [`with_headers`], and for a preflight the allowed methods and headers too.
pub(crate) fn with_preflight_headers(response: Response) -> Response {
    let mut response = with_headers(response);
    let headers = response.headers_mut();
    headers.insert(names::ACCESS_CONTROL_ALLOW_METHODS, ALLOWED_METHODS_VALUE);
    headers.insert(names::ACCESS_CONTROL_ALLOW_HEADERS, ALLOWED_HEADERS_VALUE);
    headers.insert(names::ACCESS_CONTROL_MAX_AGE, MAX_AGE_VALUE);
    response
}
