//! Headers every response carries: browser security and CORS.

use axum::http::{HeaderName, HeaderValue, Method, Request};
use axum::middleware::Next;
use axum::response::Response;

use super::names;

const EXPOSED: &str = "stream-next-offset, stream-up-to-date, stream-closed, stream-cursor, \
stream-ttl, stream-expires-at, stream-sse-data-encoding, producer-epoch, producer-seq, \
producer-expected-seq, producer-received-seq, etag, content-type, content-encoding, vary, location";

const ALLOWED_HEADERS: &str = "content-type, if-none-match, stream-ttl, stream-expires-at, \
stream-closed, stream-seq, stream-forked-from, stream-fork-offset, stream-fork-sub-offset, \
producer-id, producer-epoch, producer-seq, authorization, accept-encoding";

const ALLOWED_METHODS: &str = "GET, POST, PUT, DELETE, HEAD, OPTIONS";

/// Adds `X-Content-Type-Options`, `Cross-Origin-Resource-Policy` and the CORS headers to every
/// response, errors included; preflights also get the allowed methods and headers.
pub(crate) async fn headers(request: Request<axum::body::Body>, next: Next) -> Response {
    let preflight = request.method() == Method::OPTIONS;
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let mut set = |name: HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(names::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(names::CROSS_ORIGIN_RESOURCE_POLICY, "cross-origin");
    set(names::ACCESS_CONTROL_ALLOW_ORIGIN, "*");
    set(names::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED);
    if preflight {
        set(names::ACCESS_CONTROL_ALLOW_METHODS, ALLOWED_METHODS);
        set(names::ACCESS_CONTROL_ALLOW_HEADERS, ALLOWED_HEADERS);
        set(names::ACCESS_CONTROL_MAX_AGE, "86400");
    }
    response
}
