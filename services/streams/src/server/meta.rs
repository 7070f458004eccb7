//! HEAD (metadata), DELETE, and the CORS preflight.

use axum::extract::{Path, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};

use super::caching::NO_STORE;
use super::names;
use super::reply::{Failure, Reply};
use super::request;
use super::state::AppState;
use crate::protocol;

/// HEAD: content type, tail, expiry and closed flag; does not reset a TTL.
pub(crate) async fn head(
    State(app): State<AppState>,
    Path(path): Path<String>,
) -> Result<Response, Failure> {
    let name = request::stream_name(&path)?;
    let info = app.storage().head(&name).await?;
    let mut reply = Reply::new(StatusCode::OK)
        .header(names::CONTENT_TYPE, &info.content_type)
        .next_offset(&info.next_offset)
        .closed_if(info.closed)
        .static_header(names::CACHE_CONTROL, NO_STORE);
    if let Some((name, value)) = protocol::expiry_header(info.expiry) {
        reply = reply.header(HeaderName::from_static(name), value);
    }
    Ok(reply.into_response())
}

/// DELETE: removes the stream (kept for reads through its forks while they live).
pub(crate) async fn delete(
    State(app): State<AppState>,
    Path(path): Path<String>,
) -> Result<Response, Failure> {
    let name = request::stream_name(&path)?;
    app.storage().delete(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// OPTIONS: the CORS preflight (the allow headers are added by the security layer).
pub(crate) async fn preflight() -> Response {
    StatusCode::NO_CONTENT.into_response()
}
