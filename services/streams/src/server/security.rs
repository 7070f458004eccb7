//! Headers every response carries: browser security and CORS (added by [`super::edge`]).

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;

use super::names;

const EXPOSED: &str = "stream-next-offset, stream-up-to-date, stream-closed, stream-cursor, \
stream-ttl, stream-expires-at, stream-sse-data-encoding, producer-epoch, producer-seq, \
producer-expected-seq, producer-received-seq, etag, content-type, content-encoding, vary, location";

const ALLOWED_HEADERS: &str = "content-type, if-none-match, stream-ttl, stream-expires-at, \
stream-closed, stream-seq, stream-forked-from, stream-fork-offset, stream-fork-sub-offset, \
producer-id, producer-epoch, producer-seq, authorization, accept-encoding";

const ALLOWED_METHODS: &str = "GET, POST, PUT, DELETE, HEAD, OPTIONS";

fn set(headers: &mut HeaderMap, name: HeaderName, value: &'static str) {
    headers.insert(name, HeaderValue::from_static(value));
}

/// Adds `X-Content-Type-Options`, `Cross-Origin-Resource-Policy` and the CORS headers.
pub(crate) fn with_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    set(headers, names::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, names::CROSS_ORIGIN_RESOURCE_POLICY, "cross-origin");
    set(headers, names::ACCESS_CONTROL_ALLOW_ORIGIN, "*");
    set(headers, names::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED);
    response
}

/// [`with_headers`], and for a preflight the allowed methods and headers too.
pub(crate) fn with_preflight_headers(response: Response) -> Response {
    let mut response = with_headers(response);
    let headers = response.headers_mut();
    set(
        headers,
        names::ACCESS_CONTROL_ALLOW_METHODS,
        ALLOWED_METHODS,
    );
    set(
        headers,
        names::ACCESS_CONTROL_ALLOW_HEADERS,
        ALLOWED_HEADERS,
    );
    set(headers, names::ACCESS_CONTROL_MAX_AGE, "86400");
    response
}
