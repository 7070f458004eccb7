//! Header names as constants, so building a response or reading a request parses no names.

use axum::http::HeaderName;

use crate::protocol;

pub(crate) const NEXT_OFFSET: HeaderName = HeaderName::from_static(protocol::NEXT_OFFSET);
pub(crate) const UP_TO_DATE: HeaderName = HeaderName::from_static(protocol::UP_TO_DATE);
pub(crate) const CLOSED: HeaderName = HeaderName::from_static(protocol::CLOSED);
pub(crate) const CURSOR: HeaderName = HeaderName::from_static(protocol::CURSOR);
pub(crate) const SSE_DATA_ENCODING: HeaderName =
    HeaderName::from_static(protocol::SSE_DATA_ENCODING);
pub(crate) const PRODUCER_EPOCH: HeaderName = HeaderName::from_static(protocol::PRODUCER_EPOCH);
pub(crate) const PRODUCER_SEQ: HeaderName = HeaderName::from_static(protocol::PRODUCER_SEQ);
pub(crate) const PRODUCER_EXPECTED_SEQ: HeaderName =
    HeaderName::from_static(protocol::PRODUCER_EXPECTED_SEQ);
pub(crate) const PRODUCER_RECEIVED_SEQ: HeaderName =
    HeaderName::from_static(protocol::PRODUCER_RECEIVED_SEQ);
pub(crate) const PRODUCER_ID: HeaderName = HeaderName::from_static(protocol::PRODUCER_ID);
pub(crate) const SEQ: HeaderName = HeaderName::from_static(protocol::SEQ);
pub(crate) const TTL: HeaderName = HeaderName::from_static(protocol::TTL);
pub(crate) const EXPIRES_AT: HeaderName = HeaderName::from_static(protocol::EXPIRES_AT);
pub(crate) const FORKED_FROM: HeaderName = HeaderName::from_static(protocol::FORKED_FROM);
pub(crate) const FORK_OFFSET: HeaderName = HeaderName::from_static(protocol::FORK_OFFSET);
pub(crate) const FORK_SUB_OFFSET: HeaderName = HeaderName::from_static(protocol::FORK_SUB_OFFSET);
pub(crate) const X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");
pub(crate) const X_CONTENT_TYPE_OPTIONS: HeaderName =
    HeaderName::from_static("x-content-type-options");
pub(crate) const CROSS_ORIGIN_RESOURCE_POLICY: HeaderName =
    HeaderName::from_static("cross-origin-resource-policy");

pub(crate) use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, CACHE_CONTROL, CONTENT_ENCODING,
    CONTENT_TYPE, ETAG, LOCATION, RETRY_AFTER, VARY,
};
