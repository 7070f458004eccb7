//! Headers every response carries: browser security and CORS.

use axum::http::{HeaderName, HeaderValue, Method, Request};
use axum::middleware::Next;
use axum::response::Response;

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
    let mut set = |name: &'static str, value: &'static str| {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    };
    set("x-content-type-options", "nosniff");
    set("cross-origin-resource-policy", "cross-origin");
    set("access-control-allow-origin", "*");
    set("access-control-expose-headers", EXPOSED);
    if preflight {
        set("access-control-allow-methods", ALLOWED_METHODS);
        set("access-control-allow-headers", ALLOWED_HEADERS);
        set("access-control-max-age", "86400");
    }
    response
}
