//! What the server's tests share: an `IngestServer` over any storage with two apps' keys,
//! requests through its router, and the app's stream read back.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use courier_ingest::server::{
    ApiKeyChecker, IngestConfig, IngestServer, KeyDigest, KeyRecord, MemoryKeyStore, app_stream,
};
use courier_traits::storage::{ReadLimits, StorageError, StreamStorage};
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The key of `app-1`.
pub const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// The key of `app-2`.
pub const OTHER_APP_KEY: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

/// The keys of `app-1` (`KEY`) and `app-2` (`OTHER_APP_KEY`).
pub fn keys() -> Arc<MemoryKeyStore> {
    let keys = Arc::new(MemoryKeyStore::new());
    for (id, app, key) in [("k1", "app-1", KEY), ("k2", "app-2", OTHER_APP_KEY)] {
        keys.insert(KeyRecord {
            id: id.into(),
            app_id: app.into(),
            name: "test".into(),
            digest: KeyDigest::of_key(key),
            revoked: false,
        });
    }
    keys
}

/// A server (a node) on `storage`.
pub fn server(storage: Arc<dyn StreamStorage>, config: IngestConfig) -> IngestServer {
    IngestServer::new(storage, ApiKeyChecker::new(keys()), config).expect("server")
}

/// A response, read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `eventId` of each result (`""` for a rejected event).
    pub fn event_ids(&self) -> Vec<String> {
        self.json()["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|r| r["eventId"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// `request` answered by the service `IngestServer::serve` runs (the batch endpoint answered
/// beside the router, the rest by it).
pub async fn send(server: &IngestServer, request: Request<axum::body::Body>) -> Answer {
    let response = server.service().oneshot(request).await.expect("infallible");
    read_answer(response).await
}

/// `request` answered by the router alone.
pub async fn send_routed(server: &IngestServer, request: Request<axum::body::Body>) -> Answer {
    let response = server.router().oneshot(request).await.expect("infallible");
    read_answer(response).await
}

async fn read_answer(response: http::Response<axum::body::Body>) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

pub fn post(
    path: &str,
    key: Option<&str>,
    body: impl Into<axum::body::Body>,
) -> Request<axum::body::Body> {
    post_as(path, key, "application/json", body)
}

pub fn post_as(
    path: &str,
    key: Option<&str>,
    content_type: &str,
    body: impl Into<axum::body::Body>,
) -> Request<axum::body::Body> {
    let mut request = Request::post(path).header(header::CONTENT_TYPE, content_type);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    request.body(body.into()).expect("request")
}

pub fn get(path: &str) -> Request<axum::body::Body> {
    Request::get(path)
        .body(axum::body::Body::empty())
        .expect("request")
}

/// Every record of `app`'s stream, as JSON; none if it does not exist.
pub async fn stored(storage: &dyn StreamStorage, app: &str) -> Vec<Value> {
    let name = app_stream(app).expect("name");
    let mut records = Vec::new();
    let mut from = None;
    // Bounded: 1 000 reads of up to 10 000 records each is far past any test's data.
    for _ in 0..1_000 {
        match storage.read(&name, from, ReadLimits::default()).await {
            Ok(batch) => {
                records.extend(
                    batch
                        .records
                        .iter()
                        .map(|r| serde_json::from_slice::<Value>(&r.data).expect("stored JSON")),
                );
                if batch.up_to_date {
                    return records;
                }
                from = Some(batch.next_offset);
            }
            Err(StorageError::NotFound { .. }) => return records,
            Err(e) => panic!("reading {name}: {e}"),
        }
    }
    panic!("{name} never reached its tail");
}

/// An envelope of `app-1` with idempotency key `key` and a custom event `name`.
pub fn envelope(key: &str, name: &str) -> Value {
    json!({"app_id": "app-1", "device_id": "d", "timestamp_ms": 1_770_000_000_000_i64,
        "idempotency_key": key, "custom_event": {"event_name": name}})
}

/// The stored record without what differs between two requests (`received_ms`).
pub fn comparable(mut record: Value) -> Value {
    if let Some(object) = record.as_object_mut() {
        object.remove("received_ms");
    }
    record
}

/// The vendored protos compiled in-process by protox (no protoc), independent of the
/// server's checked-in descriptor set.
pub fn descriptor_pool() -> prost_reflect::DescriptorPool {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let mut compiler = protox::Compiler::new([root]).expect("proto root");
    compiler.include_imports(true);
    compiler
        .open_file("causality/v1/service.proto")
        .expect("compiles");
    compiler.descriptor_pool()
}

/// The upstream Go SDK's `json.Marshal` of its `batchRequest` (fields in declaration order,
/// `omitempty` ones absent, map keys sorted).
pub const GO_SDK_BODY: &str = concat!(
    r#"{"events":[{"event_type":"signup","timestamp":"2026-02-07T10:00:00Z","user_id":"u1","#,
    r#""session_id":"s1","app_id":"app-1","idempotency_key":"7b0c8f3e-2d6a-4f0e-9a51-3c2f1d9e8b70","#,
    r#""metadata":{"plan":"pro","seats":"5"},"server_context":{"hostname":"web-1","#,
    r#""go_version":"go1.23.4","sdk_version":"0.1.0","os":"linux","arch":"amd64"}},"#,
    r#"{"event_type":"ping","timestamp":"2026-02-07T10:00:01.5+01:00","idempotency_key":"k2"}]}"#
);
