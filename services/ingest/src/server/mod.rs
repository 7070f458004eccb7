//! The ingestion server's request layer (feature `server`).
//!
//! Every step of a request before the storage, as pure functions and small types so each is
//! tested on its own:
//!
//! - [`decode_body`]: `Content-Type` (protojson, or binary protobuf read with the vendored
//!   descriptors) and `Content-Encoding` (gzip inflated up to the body limit and no further),
//!   the body size limit;
//! - [`EventParser`]: both event shapes of the spec (the upstream envelope under protojson
//!   rules, the upstream Go SDK's simple shape), the batch limits, per-event validation and the
//!   normalised record that is stored;
//! - [`BatchResponse`] and [`RequestError`]: the 200 body with exactly the upstream field set,
//!   and every error status with its upstream body;
//! - [`ApiKeyChecker`] over a [`KeyStore`] ([`MemoryKeyStore`], also loaded from a static keys
//!   file): API key format, SHA-256 digest, constant-time comparison;
//! - [`KeyLog`], [`StorageKeyStore`] and [`AdminApi`]: keys kept as a log in the storage,
//!   followed by every node, managed through upstream's admin API;
//! - [`RateLimiter`]: the per-app token bucket;
//! - [`IngestServer`]: the axum router tying them together (served as [`IngestService`],
//!   which answers the batch endpoint without the router's per-request work), writing each request's valid
//!   events to the app's stream [`app_stream`] with one keyed append (200 only after it
//!   committed; a storage failure is 503, or 500 when retrying cannot help, and nothing was
//!   written), and serving [`IngestMetrics`] on `GET /metrics`.

mod auth;
mod body;
mod canonical;
mod canonical_pass;
mod envelope;
mod event;
mod field_table;
mod fresh_id;
mod hot_route;
mod json_text;
mod keys;
mod lean_batch;
mod lean_reader;
mod lean_template;
pub mod metrics;
mod parse;
mod protobuf;
mod rate;
mod record_json;
mod reply;
mod response;
mod router;
mod schema;
mod simple;
mod strict_json;

pub use auth::{
    ApiKeyChecker, AuthenticatedApp, KeyDigest, KeyRecord, KeyStore, KeyStoreError, KeysFileError,
    MemoryKeyStore,
};
pub use body::{BodyFormat, DecodedBody, decode_body};
pub use event::{AcceptedEvent, EventOutcome, IngestContext};
pub use hot_route::IngestService;
pub use keys::{
    AdminApi, CombinedKeyStore, CreatedKey, KEY_LOG_STREAM, KeyInfo, KeyLog, KeyLogError,
    MAX_KEY_NAME_BYTES, StorageKeyStore, TailConfig, created_key_json, key_json, key_list_json,
    revoked_key_json,
};
pub use metrics::{AuthFailure, IngestMetrics};
pub use parse::{EventParser, Limits};
pub use rate::RateLimiter;
pub use reply::{RequestError, Violation};
pub use response::{BatchResponse, EventResult, single_accepted_json};
pub use router::{IngestConfig, IngestServer, IngestServerError, app_stream};
pub use schema::SchemaError;
