//! `GET /metrics` after a known sequence of requests, and the per-request log lines (which
//! never hold an API key).

#![cfg(feature = "server")]

mod log_capture;
mod server_support;

use std::sync::Arc;

use courier_impls::memory::MemoryStreamStorage;
use courier_ingest::server::IngestConfig;
use http::header;
use log_capture::Logs;
use serde_json::json;
use server_support::{KEY, OTHER_APP_KEY, envelope, get, post, send, server};

/// The value of the sample `line_start` (name and labels) in `text`.
fn sample(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(line_start)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {line_start} in\n{text}"))
        .parse()
        .expect("number")
}

#[tokio::test]
async fn metrics_count_requests_events_sizes_appends_and_auth_failures() {
    let server = server(
        Arc::new(MemoryStreamStorage::new()),
        IngestConfig::default(),
    );
    let before = send(&server, get("/metrics")).await;
    assert_eq!(before.status, 200);
    assert_eq!(
        before.headers[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = before.text();
    assert_eq!(
        sample(&text, r#"courier_ingest_events_total{outcome="accepted"}"#),
        0.0
    );
    assert_eq!(sample(&text, "courier_ingest_request_events_count"), 0.0);

    // 3 events: one stored, one rejected, one repeating the first inside the batch.
    let body =
        json!({"events": [envelope("k-a", "a"), envelope("k-b", ""), envelope("k-a", "again")]})
            .to_string();
    let bytes = body.len();
    assert_eq!(
        send(&server, post("/v1/events/batch", Some(KEY), body.clone()))
            .await
            .status,
        200
    );
    // The same batch again: both valid events are duplicates now.
    assert_eq!(
        send(&server, post("/v1/events/batch", Some(KEY), body))
            .await
            .status,
        200
    );
    assert_eq!(
        send(&server, post("/v1/events/batch", None, "{}"))
            .await
            .status,
        401
    );
    assert_eq!(
        send(
            &server,
            post("/v1/events/batch", Some(&KEY.replace('0', "9")), "{}")
        )
        .await
        .status,
        401
    );
    assert_eq!(
        send(
            &server,
            post("/v1/events/batch", Some(&KEY.to_uppercase()), "{}")
        )
        .await
        .status,
        401
    );
    assert_eq!(
        send(&server, post("/v1/events/batch", Some(OTHER_APP_KEY), "[]"))
            .await
            .status,
        400
    );

    let text = send(&server, get("/metrics")).await.text();
    for (line, value) in [
        (r#"courier_ingest_requests_total{status="200"}"#, 2.0),
        (r#"courier_ingest_requests_total{status="400"}"#, 1.0),
        (r#"courier_ingest_requests_total{status="401"}"#, 3.0),
        (r#"courier_ingest_events_total{outcome="accepted"}"#, 1.0),
        (r#"courier_ingest_events_total{outcome="duplicate"}"#, 3.0),
        (r#"courier_ingest_events_total{outcome="rejected"}"#, 2.0),
        (
            r#"courier_ingest_auth_failures_total{reason="missing"}"#,
            1.0,
        ),
        (
            r#"courier_ingest_auth_failures_total{reason="malformed"}"#,
            1.0,
        ),
        (
            r#"courier_ingest_auth_failures_total{reason="unknown_or_revoked"}"#,
            1.0,
        ),
        ("courier_ingest_request_events_count", 2.0),
        ("courier_ingest_request_events_sum", 6.0),
        (r#"courier_ingest_request_events_bucket{le="1"}"#, 0.0),
        (r#"courier_ingest_request_events_bucket{le="5"}"#, 2.0),
        // The two batches and the 400's body ("[]") were read; the 401s were not.
        ("courier_ingest_request_bytes_count", 3.0),
        ("courier_ingest_request_bytes_sum", (2 * bytes + 2) as f64),
        ("courier_ingest_append_seconds_count", 2.0),
    ] {
        assert_eq!(sample(&text, line), value, "{line}");
    }
    assert!(
        text.contains("# TYPE courier_ingest_append_seconds histogram"),
        "{text}"
    );
    // Probes and scrapes are not ingestion requests.
    assert!(!text.contains(r#"status="204""#));
    assert_eq!(
        sample(&text, r#"courier_ingest_request_events_bucket{le="+Inf"}"#),
        2.0
    );
}

#[tokio::test]
async fn each_request_is_logged_with_its_id_app_and_counts_and_never_a_key() {
    let logs = Logs::default();
    let _guard = logs.capture(tracing::Level::TRACE);
    let server = server(
        Arc::new(MemoryStreamStorage::new()),
        IngestConfig::default(),
    );
    let unknown_key = KEY.replace('a', "b");
    let body = json!({"events": [envelope("k-a", "a"), envelope("k-b", "")]}).to_string();
    for (id, key) in [
        ("req-ok", Some(KEY)),
        ("req-unknown", Some(unknown_key.as_str())),
        ("req-upper", Some(&KEY.to_uppercase())),
        ("req-none", None),
    ] {
        let mut request = post("/v1/events/batch", key, body.clone());
        request
            .headers_mut()
            .insert("x-request-id", id.parse().expect("value"));
        send(&server, request).await;
    }
    let mut single = post(
        "/v1/events/ingest",
        Some(KEY),
        json!({"event": envelope("k-c", "c")}).to_string(),
    );
    single
        .headers_mut()
        .insert("x-request-id", "req-single".parse().expect("value"));
    send(&server, single).await;
    let mut refused = post("/v1/events/batch", Some(KEY), r#"{"events":"x"}"#);
    refused
        .headers_mut()
        .insert("x-request-id", "req-bad".parse().expect("value"));
    send(&server, refused).await;

    let text = logs.text();
    let line = |id: &str| {
        text.lines()
            .find(|l| l.contains(&format!("request_id={id}")))
            .unwrap_or_else(|| panic!("no line of {id} in\n{text}"))
            .to_owned()
    };
    let ok = line("req-ok");
    for part in [
        "app=app-1",
        "events=2",
        "stored=1",
        "duplicate=0",
        "rejected=1",
    ] {
        assert!(ok.contains(part), "{part} missing: {ok}");
    }
    assert!(ok.contains("status=200"), "{ok}");
    for id in ["req-unknown", "req-upper", "req-none"] {
        let refused = line(id);
        assert!(
            refused.contains("status=401") && refused.contains("app=-"),
            "{refused}"
        );
    }
    let single = line("req-single");
    assert!(
        single.contains("stored=1") && single.contains("events=1"),
        "{single}"
    );
    let bad = line("req-bad");
    assert!(
        bad.contains("status=400") && bad.contains("app=app-1"),
        "{bad}"
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("ingest request"))
            .count(),
        6,
        "one line per request:\n{text}"
    );
    for secret in [KEY, &unknown_key, &KEY.to_uppercase()] {
        assert!(!text.contains(secret), "a key was logged:\n{text}");
    }
}
