//! A `courier ingest` process for tests, raw batches for it, and what its storage holds.
// Each test binary that includes this file uses a part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use courier::impls::http::HttpTransport;
use courier::ingest::server::KeyDigest;
use courier::storage::{Offset, ReadLimits, StreamName};
use courier::traits::transport::{Method, Request, RequestTransport};
use courier::{StorageError, StreamStorage};

#[path = "../checker/service.rs"]
mod service;
use service::Service;

// The binary's own `--storage` parser, so a test opens exactly what the process opened.
#[path = "../../src/storage.rs"]
mod storage;

/// The API key every test sends; the keys file holds its SHA-256 for [`APP`].
pub(crate) const KEY: &str = "5f0c6b2a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b";
/// The app of [`KEY`].
pub(crate) const APP: &str = "shop";
/// Bound on every wait in these tests.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// Writes the keys file (`{"app_id","name","sha256"}`) for [`KEY`] into `dir`.
pub(crate) fn write_keys_file(dir: &Path) -> PathBuf {
    let path = dir.join("keys.json");
    let digest = KeyDigest::of_key(KEY).to_hex();
    let text = format!(r#"[{{"app_id":"{APP}","name":"tests","sha256":"{digest}"}}]"#);
    std::fs::write(&path, text).expect("write keys file");
    path
}

/// A storage spec of this test's own on the Postgres at `url`: a fresh schema, selected by the
/// URL's `search_path`. [`Postgres::shared`](courier_testkit::fixtures::Postgres::shared) gives
/// each test a fresh database, except with `COURIER_POSTGRES_URL`, where every test gets that
/// one database and tests running at once would write the same app stream.
pub(crate) async fn postgres_spec(url: &str) -> String {
    let schema = courier_testkit::fixtures::unique_prefix();
    // Opening with the schema creates it and its tables.
    let config = courier::impls::postgres::PgStorageConfig::default().with_schema(schema.clone());
    courier::impls::postgres::PgStreamStorage::connect(url, config)
        .await
        .expect("a schema of this test's own");
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options[search_path]={schema}")
}

/// Prints how long a test has run at each step (shown on failure and with --nocapture).
pub(crate) struct Steps(Instant);

impl Steps {
    pub(crate) fn start() -> Steps {
        Steps(Instant::now())
    }

    pub(crate) fn step(&self, what: &str) {
        eprintln!("[{:>6.2}s] {what}", self.0.elapsed().as_secs_f64());
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

/// A `courier ingest` process on a free loopback port, its output in a log file; killed on
/// drop.
pub(crate) struct IngestNode {
    service: Service,
    http: HttpTransport,
}

impl IngestNode {
    /// Starts `courier ingest --storage STORAGE` with the keys file of [`KEY`], logging into
    /// `dir`; waits for `/health`.
    pub(crate) async fn start(storage: &str, dir: &Path) -> IngestNode {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let keys = write_keys_file(dir);
        let keys = keys.to_str().expect("utf-8 path");
        let service = Service::start(
            &["ingest", "--storage", storage, "--keys-file", keys],
            &[("COURIER_LOG", "warn")],
            &dir.join(format!("ingest-{n}.log")),
        )
        .await;
        let http = HttpTransport::new(&format!("http://{}", service.addr()))
            .expect("url")
            .with_timeout(Duration::from_secs(10));
        IngestNode { service, http }
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.service.addr())
    }

    /// Posts `body` to `/v1/events/batch` with [`KEY`]; `Err` when the connection fails.
    pub(crate) async fn post_batch(&self, body: &str) -> Result<(u16, serde_json::Value), String> {
        post_batch(&self.http, body).await
    }

    /// The value of the sample `name` (with its labels, as printed) in `/metrics`.
    pub(crate) async fn metric(&self, name: &str) -> Option<f64> {
        let response = self
            .http
            .send(Request::new(Method::Get, "/metrics"))
            .await
            .ok()?;
        let text = response.body.collect(1 << 20).await.ok()?;
        let text = String::from_utf8_lossy(&text).into_owned();
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
    }

    /// A handle that posts to this node from another task.
    pub(crate) fn client(&self) -> HttpTransport {
        self.http.clone()
    }

    /// SIGTERM; `Err` with the log's tail unless the process exited 0 in time.
    pub(crate) async fn terminate(mut self) -> Result<(), String> {
        if self.service.stop().await {
            Ok(())
        } else {
            Err(self.service.log_tail())
        }
    }

    /// `kill -9`, `down` without a process, then the same command on the same port.
    pub(crate) async fn kill9_and_restart(&mut self, down: Duration) {
        if let Err(e) = self.service.kill_and_restart(down).await {
            panic!("restart after kill -9: {e}");
        }
    }
}

/// Posts `body` to `/v1/events/batch` through `http` with [`KEY`].
pub(crate) async fn post_batch(
    http: &HttpTransport,
    body: &str,
) -> Result<(u16, serde_json::Value), String> {
    let request = Request::new(Method::Post, "/v1/events/batch")
        .header("Content-Type", "application/json")
        .header("X-API-Key", KEY)
        .body(body.to_owned());
    let response = http.send(request).await.map_err(|e| e.to_string())?;
    let status = response.status;
    let body = response
        .body
        .collect(16 << 20)
        .await
        .map_err(|e| e.to_string())?;
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    Ok((status, json))
}

/// A batch of simple-shape events (the upstream Go SDK's form) with idempotency keys
/// `{prefix}-{i}` for `i` in `seqs`, each carrying `seq` in its metadata.
pub(crate) fn batch_json(prefix: &str, seqs: std::ops::Range<usize>) -> String {
    let events: Vec<serde_json::Value> = seqs
        .map(|i| {
            serde_json::json!({
                "event_type": "checkout",
                "idempotency_key": format!("{prefix}-{i}"),
                "user_id": format!("u{i}"),
                "metadata": { "seq": i.to_string() },
            })
        })
        .collect();
    serde_json::json!({ "events": events }).to_string()
}

/// The event ids of a 200 answer, in order; panics unless every event was accepted.
pub(crate) fn accepted_ids(status: u16, body: &serde_json::Value, expected: usize) -> Vec<String> {
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["acceptedCount"].as_u64(),
        Some(expected as u64),
        "{body}"
    );
    let results = body["results"].as_array().expect("results");
    results
        .iter()
        .map(|r| {
            assert_eq!(r["status"], "accepted", "{r}");
            r["eventId"].as_str().expect("eventId").to_owned()
        })
        .collect()
}

/// Every record of `ingest/<app>` in the storage `spec` names (the same `--storage` form the
/// binary takes), as JSON. A stream that does not exist holds nothing.
pub(crate) async fn stored_events(spec: &str, app: &str) -> Vec<serde_json::Value> {
    let store = storage::open(spec).await.expect("open storage");
    let name = StreamName::new(&format!("ingest/{app}")).expect("stream name");
    read_all(store.as_ref(), &name).await
}

async fn read_all(store: &dyn StreamStorage, name: &StreamName) -> Vec<serde_json::Value> {
    let mut records = Vec::new();
    let mut from: Option<Offset> = None;
    // Pages of 1 000: the Redis storage's commands time out after 500 ms (redis-rs's default
    // response timeout), which one read of the default 10 000 records (~4 MiB) exceeded on a
    // loaded machine.
    let page = ReadLimits {
        max_records: 1_000,
        ..ReadLimits::default()
    };
    // Bounded: each round returns at least one record or says up to date.
    for _ in 0..10_000 {
        let batch = match store.read(name, from.clone(), page).await {
            Ok(batch) => batch,
            Err(StorageError::NotFound { .. }) => return records,
            Err(e) => panic!("read {name}: {e}"),
        };
        for record in &batch.records {
            records.push(serde_json::from_slice(&record.data).expect("a stored record is JSON"));
        }
        if batch.up_to_date || batch.records.is_empty() {
            return records;
        }
        from = Some(batch.next_offset);
    }
    panic!("reading {name} did not finish");
}

/// How many records each idempotency key has; panics on a record without one.
pub(crate) fn copies_by_key(records: &[serde_json::Value]) -> HashMap<String, usize> {
    let mut copies = HashMap::new();
    for record in records {
        let key = record["idempotency_key"]
            .as_str()
            .unwrap_or_else(|| panic!("record without idempotency_key: {record}"));
        *copies.entry(key.to_owned()).or_insert(0) += 1;
    }
    copies
}
