//! The server-level cases of the spec's matrix on every storage: memory, SQLite, and real
//! Redis and Postgres from the testkit (`COURIER_TESTKIT_MODE` picks how they are provided).
//! Each case runs through `IngestServer` routers; "two nodes" are two `IngestServer`s, each on
//! its own connection (`StorageFactory::connect`) to the one shared storage.
//!
//! I10 (storage stopped mid-load, then started again) runs on Redis and Postgres, on a private
//! server of the test's own.

#![cfg(feature = "server")]

mod server_support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use courier_impls::memory::MemoryStreamStorage;
use courier_impls::postgres::{PgStorageConfig, PgStreamStorage};
use courier_impls::redis::{RedisStorageConfig, RedisStreamStorage};
use courier_impls::sqlite::{SqliteStorageConfig, SqliteStreamStorage};
use courier_ingest::server::{IngestConfig, IngestServer};
use courier_testkit::fixtures::{Postgres, Redis, SharedFixture, unique_prefix};
use courier_testkit::suites::StorageFactory;
use http::header;
use serde_json::{Value, json};
use server_support::{
    Answer, GO_SDK_BODY, KEY, OTHER_APP_KEY, comparable, envelope, post, send, server, stored,
};

/// A new node: an `IngestServer` on a new connection to the factory's storage.
async fn node<F: StorageFactory>(factory: &F, config: IngestConfig) -> IngestServer {
    server(Arc::new(factory.connect().await), config)
}

/// What another connection sees in `app`'s stream.
async fn stored_in<F: StorageFactory>(factory: &F, app: &str) -> Vec<Value> {
    stored(&factory.connect().await, app).await
}

fn ok(answer: &Answer) {
    assert_eq!(answer.status, 200, "{}", answer.text());
}

/// I1: the upstream Go SDK's body, all accepted, stored with `timestamp_ms`.
async fn i1_go_sdk_body<F: StorageFactory>(factory: &F) {
    let node = node(factory, IngestConfig::default()).await;
    let answer = send(&node, post("/v1/events/batch", Some(KEY), GO_SDK_BODY)).await;
    ok(&answer);
    assert_eq!(answer.json()["acceptedCount"], 2);
    let ids = answer.event_ids();
    let records = stored_in(factory, "app-1").await;
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0]["timestamp_ms"], 1_770_458_400_000_i64);
    assert_eq!(records[0]["metadata"], json!({"plan": "pro", "seats": "5"}));
    assert_eq!(
        records[1]["timestamp_ms"],
        1_770_458_401_500_i64 - 3_600_000
    );
    assert_eq!(records[0]["id"], ids[0].as_str());
    assert_eq!(records[1]["id"], ids[1].as_str());
}

/// I2: an envelope in JSON names with int64 as strings and enum names, then the same in proto
/// names: the stored records are identical.
async fn i2_both_name_forms<F: StorageFactory>(factory: &F) {
    let node = node(factory, IngestConfig::default()).await;
    let json_names = json!({"id": "e-json", "appId": "app-1", "deviceId": "d",
        "timestampMs": "1770000000000", "idempotencyKey": "k-json",
        "deviceContext": {"platform": "PLATFORM_ANDROID", "osVersion": "14"},
        "purchaseComplete": {"orderId": "o-1", "totalCents": "4200", "currency": "EUR"}});
    let proto_names = json!({"id": "e-proto", "app_id": "app-1", "device_id": "d",
        "timestamp_ms": 1_770_000_000_000_i64, "idempotency_key": "k-proto",
        "device_context": {"platform": "PLATFORM_ANDROID", "os_version": "14"},
        "purchase_complete": {"order_id": "o-1", "total_cents": 4200, "currency": "EUR"}});
    for event in [json_names, proto_names] {
        let body = json!({ "events": [event] }).to_string();
        ok(&send(&node, post("/v1/events/batch", Some(KEY), body)).await);
    }
    let records: Vec<Value> = stored_in(factory, "app-1")
        .await
        .into_iter()
        .map(|record| {
            let mut record = comparable(record);
            let object = record.as_object_mut().expect("object");
            object.remove("id");
            object.remove("idempotency_key");
            record
        })
        .collect();
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0], records[1]);
    assert_eq!(records[0]["purchase_complete"]["total_cents"], 4200);
    assert_eq!(records[0]["event_type"], "purchase_complete");
}

/// I3: the 200 body has the protojson field set only, and its counts match its results.
async fn i3_response_fields<F: StorageFactory>(factory: &F) {
    let node = node(factory, IngestConfig::default()).await;
    let body = json!({"events": [envelope("k-1", "a"), envelope("k-2", ""), envelope("k-1", "b")]})
        .to_string();
    let answer = send(&node, post("/v1/events/batch", Some(KEY), body)).await;
    ok(&answer);
    let json = answer.json();
    let mut keys: Vec<&String> = json.as_object().expect("object").keys().collect();
    keys.sort();
    assert_eq!(keys, ["acceptedCount", "rejectedCount", "results"]);
    let results = json["results"].as_array().expect("results");
    let accepted = results.iter().filter(|r| r["status"] == "accepted").count();
    assert_eq!(json["acceptedCount"], accepted);
    assert_eq!(json["rejectedCount"], results.len() - accepted);
    assert_eq!((accepted, results.len()), (2, 3));
    for (index, result) in results.iter().enumerate() {
        assert_eq!(result["index"], index);
        let expected: &[&str] = if result["status"] == "accepted" {
            &["eventId", "index", "status"]
        } else {
            &["error", "index", "status"]
        };
        let mut fields: Vec<&String> = result.as_object().expect("object").keys().collect();
        fields.sort();
        assert_eq!(fields, expected);
    }
    assert_eq!(stored_in(factory, "app-1").await.len(), 1);
}

/// I5: bad bodies are 400 naming the field, and nothing is stored.
async fn i5_bad_bodies<F: StorageFactory>(factory: &F) {
    let node = node(factory, IngestConfig::default()).await;
    let too_many = json!({"events": vec![json!({"event_type": "x"}); 10_001]}).to_string();
    let truncated = json!({"events": [envelope("k", "x")]}).to_string();
    let truncated = &truncated[..truncated.len() / 2];
    for (body, field) in [
        ("", "body"),
        (truncated, "body"),
        (r#"{"events":"x"}"#, "events"),
        (r#"{"events":[]}"#, "events"),
        (r#"{"events":[{"event_type":"x"}],"extra":1}"#, "extra"),
        (
            r#"{"events":[{"app_id":"app-1","device_id":"d","timestamp_ms":1,"custom_event":{"event_name":"x"},"colour":"red"}]}"#,
            "events[0].colour",
        ),
        (too_many.as_str(), "events"),
    ] {
        let answer = send(&node, post("/v1/events/batch", Some(KEY), body.to_owned())).await;
        assert_eq!(answer.status, 400, "{field}: {}", answer.text());
        assert_eq!(answer.json()["violations"][0]["field"], field);
    }
    assert!(stored_in(factory, "app-1").await.is_empty());
}

/// I7: a mixed batch: the invalid events rejected at their indices, the rest stored, a key
/// repeated in the batch accepted once with the first one's id.
async fn i7_mixed_batch<F: StorageFactory>(factory: &F) {
    let node = node(factory, IngestConfig::default()).await;
    let mut no_payload = envelope("np", "x");
    no_payload
        .as_object_mut()
        .expect("object")
        .remove("custom_event");
    let mut zero_time = envelope("zt", "x");
    zero_time["timestamp_ms"] = json!(0);
    let mut no_device = envelope("nd", "x");
    no_device["device_id"] = json!("");
    let events = json!([
        envelope("k-0", "kept"),
        no_payload,
        zero_time,
        no_device,
        envelope("big", &"x".repeat(300 << 10)),
        {"event_type": "x", "timestamp": "2026-13-45T99:00:00Z"},
        envelope("k-6", "kept"),
        envelope("k-0", "repeat of 0"),
    ]);
    let answer = send(
        &node,
        post(
            "/v1/events/batch",
            Some(KEY),
            json!({ "events": events }).to_string(),
        ),
    )
    .await;
    ok(&answer);
    let json = answer.json();
    let results = json["results"].as_array().expect("results");
    let rejected: Vec<u64> = results
        .iter()
        .filter(|r| r["status"] == "rejected")
        .map(|r| r["index"].as_u64().expect("index"))
        .collect();
    assert_eq!(rejected, [1, 2, 3, 4, 5]);
    assert_eq!(results[7]["eventId"], results[0]["eventId"]);
    let records = stored_in(factory, "app-1").await;
    let names: Vec<&str> = records
        .iter()
        .map(|r| r["custom_event"]["event_name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["kept", "kept"]);
    assert_eq!(records[0]["id"], results[0]["eventId"]);
    assert_eq!(records[1]["id"], results[6]["eventId"]);
}

/// A batch of `n` simple events (of the key's app) keyed `<prefix>-<i>`, without ids (the
/// server makes them).
fn numbered_batch(prefix: &str, n: usize) -> String {
    let events: Vec<Value> = (0..n)
        .map(|i| json!({"event_type": "numbered", "idempotency_key": format!("{prefix}-{i}")}))
        .collect();
    json!({ "events": events }).to_string()
}

/// I8: the same batch twice, then concurrently to two nodes on the shared storage: the same
/// event ids every time, one copy of each event.
async fn i8_same_batch_twice_and_concurrently<F: StorageFactory>(factory: &F) {
    let first_node = node(factory, IngestConfig::default()).await;
    let second_node = node(factory, IngestConfig::default()).await;
    let body = numbered_batch("twice", 20);
    let first = send(
        &first_node,
        post("/v1/events/batch", Some(KEY), body.clone()),
    )
    .await;
    ok(&first);
    let again = send(
        &first_node,
        post("/v1/events/batch", Some(KEY), body.clone()),
    )
    .await;
    ok(&again);
    let other_node = send(&second_node, post("/v1/events/batch", Some(KEY), body)).await;
    ok(&other_node);
    assert_eq!(first.event_ids(), again.event_ids());
    assert_eq!(first.event_ids(), other_node.event_ids());

    // Concurrently, several rounds, each a new batch sent to both nodes at once; the second
    // app's stream is created by the race too.
    for round in 0..5 {
        let body = numbered_batch(&format!("race{round}"), 20);
        let (a, b) = tokio::join!(
            send(
                &first_node,
                post("/v1/events/batch", Some(OTHER_APP_KEY), body.clone())
            ),
            send(
                &second_node,
                post("/v1/events/batch", Some(OTHER_APP_KEY), body)
            ),
        );
        ok(&a);
        ok(&b);
        assert_eq!(a.event_ids(), b.event_ids(), "round {round}");
    }
    let records = stored_in(factory, "app-1").await;
    assert_eq!(records.len(), 20, "one copy each");
    let ids: Vec<&str> = records
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, first.event_ids());
    let mut keys: Vec<String> = stored_in(factory, "app-2")
        .await
        .iter()
        .map(|r| r["idempotency_key"].as_str().expect("key").to_owned())
        .collect();
    assert_eq!(keys.len(), 100, "one copy each of 5 x 20");
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 100);
}

/// Events per I10 batch, and batches.
const I10_BATCH: usize = 25;
const I10_BATCHES: usize = 40;
/// Batches acknowledged before the stop, and batches in flight while the storage stops.
const I10_BEFORE: usize = 10;
const I10_IN_FLIGHT: usize = 4;

fn i10_body(batch: usize) -> String {
    numbered_batch(&format!("load{batch}"), I10_BATCH)
}

/// I10: the storage stops in the middle of a load (requests in flight) and starts again.
/// Every request is 200 or 503 with `Retry-After`; while it is down, every request is 503.
/// A refused request wrote nothing or (committed just before the storage died, the answer
/// lost) everything, never part: checked once it is back, before the client re-sends. The
/// client then re-sends each refused batch with the same keys, and every event is stored
/// exactly once.
async fn i10_storage_stopped_mid_load<F: StorageFactory>(factory: &F) {
    // A short append timeout: a storage that hangs instead of failing is 503 soon too.
    let config = IngestConfig::default().with_append_timeout(Duration::from_secs(2));
    let node = node(factory, config).await;
    let batch = |batch: usize| post("/v1/events/batch", Some(KEY), i10_body(batch));
    for b in 0..I10_BEFORE {
        ok(&send(&node, batch(b)).await);
    }

    let in_flight = futures::future::join_all((I10_BEFORE..I10_BEFORE + I10_IN_FLIGHT).map(|b| {
        let node = node.clone();
        async move { (b, send(&node, batch(b)).await) }
    }));
    let (stopped, answers) = tokio::join!(factory.stop_server(), in_flight);
    stopped.expect("stop the storage");
    let mut refused = Vec::new();
    for (b, answer) in answers {
        match answer.status.as_u16() {
            200 => {}
            503 => refused.push(b),
            _ => panic!("batch {b} in flight: {} {}", answer.status, answer.text()),
        }
        if answer.status == 503 {
            assert_eq!(answer.headers[header::RETRY_AFTER], "1");
        }
    }
    let down = I10_BEFORE + I10_IN_FLIGHT;
    for _ in 0..3 {
        let answer = send(&node, batch(down)).await;
        assert_eq!(answer.status, 503, "{}", answer.text());
        assert_eq!(answer.headers[header::RETRY_AFTER], "1");
        assert!(answer.json()["message"].is_string());
    }
    refused.push(down);
    factory.start_server().await.expect("start the storage");

    let after_restart = stored_keys(factory).await;
    for &b in &refused {
        let written = (0..I10_BATCH)
            .filter(|i| after_restart.contains(&format!("load{b}-{i}")))
            .count();
        assert!(
            written == 0 || written == I10_BATCH,
            "batch {b} was refused with {written} of {I10_BATCH} events written"
        );
    }

    // The client's retry loop: each refused batch again, then the rest, same keys, until 200.
    for b in refused.into_iter().chain(down + 1..I10_BATCHES) {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let answer = send(&node, batch(b)).await;
            if answer.status == 200 {
                assert_eq!(answer.json()["acceptedCount"], I10_BATCH);
                break;
            }
            assert_eq!(answer.status, 503, "{}", answer.text());
            assert!(answer.headers.contains_key(header::RETRY_AFTER));
            assert!(attempts < 300, "batch {b} still refused: {}", answer.text());
            // Shorter than Retry-After: the storage reconnects within a few of these.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut keys = stored_keys(factory).await;
    assert_eq!(keys.len(), I10_BATCH * I10_BATCHES, "each event once");
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), I10_BATCH * I10_BATCHES, "no event twice");
}

async fn stored_keys<F: StorageFactory>(factory: &F) -> Vec<String> {
    stored_in(factory, "app-1")
        .await
        .iter()
        .map(|r| r["idempotency_key"].as_str().expect("key").to_owned())
        .collect()
}

/// One `#[tokio::test]` per server-level case on `$factory`.
macro_rules! server_cases {
    ($factory:expr) => {
        server_cases!(@case $factory, i1_go_sdk_body);
        server_cases!(@case $factory, i2_both_name_forms);
        server_cases!(@case $factory, i3_response_fields);
        server_cases!(@case $factory, i5_bad_bodies);
        server_cases!(@case $factory, i7_mixed_batch);
        server_cases!(@case $factory, i8_same_batch_twice_and_concurrently);
    };
    (@case $factory:expr, $case:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            super::$case(&$factory).await;
        }
    };
}

/// One process's storage: every node shares the one instance.
struct MemoryFactory(Arc<MemoryStreamStorage>);

#[async_trait]
impl StorageFactory for MemoryFactory {
    type Storage = Arc<MemoryStreamStorage>;
    async fn connect(&self) -> Arc<MemoryStreamStorage> {
        Arc::clone(&self.0)
    }
}

mod memory {
    use super::*;

    server_cases!(MemoryFactory(Arc::new(MemoryStreamStorage::new())));
}

/// Every node opens the same database file.
struct SqliteFactory(tempfile::TempDir);

#[async_trait]
impl StorageFactory for SqliteFactory {
    type Storage = SqliteStreamStorage;
    async fn connect(&self) -> SqliteStreamStorage {
        SqliteStreamStorage::connect(
            self.0.path().join("ingest.db"),
            SqliteStorageConfig::default(),
        )
        .await
        .expect("open sqlite")
    }
}

mod sqlite {
    use super::*;

    server_cases!(SqliteFactory(tempfile::tempdir().expect("temp dir")));
}

/// The run's shared Redis (a private one for I10), a key prefix per test.
struct RedisFactory {
    redis: SharedFixture<Redis>,
    url: String,
    prefix: String,
}

impl RedisFactory {
    async fn start() -> RedisFactory {
        let redis = Redis::shared().await.expect("redis starts");
        RedisFactory {
            url: redis.url(),
            redis: SharedFixture::new(redis),
            prefix: format!("courier-ingest-test:{}", unique_prefix()),
        }
    }
}

#[async_trait]
impl StorageFactory for RedisFactory {
    type Storage = RedisStreamStorage;
    async fn connect(&self) -> RedisStreamStorage {
        let config = RedisStorageConfig::default().with_key_prefix(self.prefix.clone());
        RedisStreamStorage::connect(&self.url, config)
            .await
            .expect("connect to redis")
    }
    async fn stop_server(&self) -> Result<(), String> {
        self.redis.stop().await
    }
    async fn start_server(&self) -> Result<(), String> {
        self.redis.start().await
    }
}

mod redis {
    use super::*;

    server_cases!(RedisFactory::start().await);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn i10_storage_stopped_mid_load() {
        courier_testkit::fixtures::with_private_servers(async {
            super::i10_storage_stopped_mid_load(&RedisFactory::start().await).await;
        })
        .await;
    }
}

/// A fresh database on the run's shared Postgres (a private server for I10), a schema per
/// test.
struct PgFactory {
    postgres: SharedFixture<Postgres>,
    url: String,
    schema: String,
}

impl PgFactory {
    async fn start() -> PgFactory {
        let postgres = Postgres::shared().await.expect("postgres starts");
        PgFactory {
            url: postgres.url(),
            postgres: SharedFixture::new(postgres),
            schema: unique_prefix(),
        }
    }
}

#[async_trait]
impl StorageFactory for PgFactory {
    type Storage = PgStreamStorage;
    async fn connect(&self) -> PgStreamStorage {
        let config = PgStorageConfig::default().with_schema(self.schema.clone());
        PgStreamStorage::connect(&self.url, config)
            .await
            .expect("connect to postgres")
    }
    async fn stop_server(&self) -> Result<(), String> {
        self.postgres.stop().await
    }
    async fn start_server(&self) -> Result<(), String> {
        self.postgres.start().await
    }
}

mod postgres {
    use super::*;

    server_cases!(PgFactory::start().await);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn i10_storage_stopped_mid_load() {
        courier_testkit::fixtures::with_private_servers(async {
            super::i10_storage_stopped_mid_load(&PgFactory::start().await).await;
        })
        .await;
    }
}
