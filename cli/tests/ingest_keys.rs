//! `courier ingest keys` against a running `courier ingest` on one SQLite file: a key created
//! by the CLI works on the server (also one created after it started: the server follows the
//! log), is revoked through the admin API and then answers 401; a key revoked by the CLI stops
//! working on the running server within 5 s; the admin token reads the events.

#[path = "checker/service.rs"]
#[allow(dead_code)] // restarts are for the fault tests
mod service;

use std::path::Path;
use std::time::{Duration, Instant};

use courier::impls::http::HttpTransport;
use courier::ingest::server::KeyDigest;
use courier::traits::transport::{Method, Request, RequestTransport};
use serde_json::{Value, json};
use service::Service;

const TOKEN: &str = "test-admin-token";
const APP: &str = "shop";

/// `courier ingest keys --storage STORAGE <args>`: its stdout as JSON.
async fn keys_cli(storage: &str, args: &[&str]) -> Value {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_courier"))
        .args(["ingest", "keys", "--storage", storage])
        .args(args)
        .env("COURIER_LOG", "warn")
        .output()
        .await
        .expect("courier runs");
    assert!(
        output.status.success(),
        "courier ingest keys {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

async fn call(http: &HttpTransport, request: Request) -> (u16, Value) {
    let response = http.send(request).await.expect("answer");
    let status = response.status;
    let body = response.body.collect(1 << 20).await.expect("body");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn post_event(http: &HttpTransport, key: &str, idempotency_key: &str) -> (u16, Value) {
    let body = json!({"events": [{"event_type": "signup", "app_id": APP,
        "idempotency_key": idempotency_key}]});
    let request = Request::new(Method::Post, "/v1/events/batch")
        .header("Content-Type", "application/json")
        .header("X-API-Key", key)
        .body(body.to_string());
    call(http, request).await
}

/// Posts with `key` every 50 ms until the status is `want`; at most 5 s.
async fn until_status(http: &HttpTransport, key: &str, want: u16) -> Duration {
    let started = Instant::now();
    for attempt in 0..100 {
        if post_event(http, key, &format!("poll-{want}-{attempt}"))
            .await
            .0
            == want
        {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {want} within 5 s");
}

fn created(value: &Value) -> (String, String) {
    let id = value["id"].as_str().expect("id").to_owned();
    let key = value["key"].as_str().expect("key").to_owned();
    assert_eq!(key.len(), 64);
    (id, key)
}

async fn start(storage: &str, dir: &Path) -> (Service, HttpTransport) {
    let service = Service::start(
        &["ingest", "--storage", storage, "--admin-token", TOKEN],
        &[("COURIER_LOG", "warn")],
        &dir.join("ingest.log"),
    )
    .await;
    let http = HttpTransport::new(&format!("http://{}", service.addr()))
        .expect("url")
        .with_timeout(Duration::from_secs(10));
    (service, http)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_from_the_cli_work_on_a_running_server_until_revoked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = format!("sqlite:{}", dir.path().join("ingest.db").display());
    let (id, key) =
        created(&keys_cli(&storage, &["create", "--app-id", APP, "--name", "ios"]).await);
    let (mut service, http) = start(&storage, dir.path()).await;

    let (status, body) = post_event(&http, &key, "e1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["acceptedCount"], 1);

    // Revoked through the admin API: 401 at once on this node.
    let revoke = Request::new(Method::Delete, format!("/api/admin/keys/{id}"))
        .header("Authorization", format!("Bearer {TOKEN}"));
    let (status, body) = call(&http, revoke).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"status": "revoked", "id": id}));
    let (status, body) = post_event(&http, &key, "e2").await;
    assert_eq!(status, 401);
    assert_eq!(body, json!({"error": "invalid API key"}));

    // Created and revoked by the CLI while the server runs: the server follows the log.
    let (second_id, second) = created(&keys_cli(&storage, &["create", "--app-id", APP]).await);
    until_status(&http, &second, 200).await;
    let revoked = keys_cli(&storage, &["revoke", &second_id]).await;
    assert_eq!(revoked, json!({"status": "revoked", "id": second_id}));
    let took = until_status(&http, &second, 401).await;
    assert!(took < Duration::from_secs(5), "{took:?}");

    let list = keys_cli(&storage, &["list", "--app-id", APP]).await;
    assert_eq!(list["count"], 2);
    assert!(
        list["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .all(|k| k["revoked"] == true)
    );
    assert!(!list.to_string().contains(&key), "list shows no key");

    // The admin token reads the stored events (one: e1; the polls with the second key too).
    let read = Request::new(Method::Get, format!("/v1/stream/ingest/{APP}?offset=-1"))
        .header("Authorization", format!("Bearer {TOKEN}"));
    let (status, events) = call(&http, read).await;
    assert_eq!(status, 200);
    let events = events.as_array().expect("array");
    assert!(
        events.iter().any(|e| e["idempotency_key"] == "e1"),
        "{events:?}"
    );
    assert!(events.iter().all(|e| e["event_type"] == "signup"));

    // No key in plaintext anywhere in the database: its file and its write-ahead log (recent
    // records live there until a checkpoint), read after the server stopped. The digests are
    // there, so the scan does see the key records.
    assert!(service.stop().await, "{}", service.log_tail());
    let mut text = String::new();
    for file in ["ingest.db", "ingest.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.path().join(file)) {
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    for plaintext in [&key, &second] {
        assert!(!text.contains(plaintext.as_str()), "a key in plaintext");
        assert!(
            text.contains(&KeyDigest::of_key(plaintext).to_hex()),
            "the key's digest is stored (the scan reads the key log)"
        );
    }
}

#[tokio::test]
async fn keys_on_the_memory_storage_are_refused() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_courier"))
        .args(["ingest", "keys", "--storage", "memory", "create"])
        .args(["--app-id", APP, "--name", "lost"])
        .env("COURIER_LOG", "warn")
        .output()
        .await
        .expect("courier runs");
    assert!(!output.status.success(), "a key nobody will ever find");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--storage memory keeps nothing"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "no key printed");
}
