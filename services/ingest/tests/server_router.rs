//! The ingestion server end to end on the in-memory storage: requests through the axum router
//! (directly, and over loopback HTTP from the SDK), events read back from the app's stream.

#![cfg(feature = "server")]

mod server_support;

use std::sync::Arc;
use std::time::Duration;

use courier_impls::memory::MemoryStreamStorage;
use courier_ingest::sdk::{Event, IngestClient};
use courier_ingest::server::{
    ApiKeyChecker, IngestConfig, IngestServer, MemoryKeyStore, app_stream,
};
use courier_traits::storage::{AppendRequest, StreamStorage};
use http::{Request, header};
use serde_json::json;
use server_support::{KEY, OTHER_APP_KEY, descriptor_pool, envelope, post, send, send_routed};

struct Fixture {
    storage: Arc<MemoryStreamStorage>,
    keys: Arc<MemoryKeyStore>,
    server: IngestServer,
}

fn fixture(config: IngestConfig) -> Fixture {
    let storage = Arc::new(MemoryStreamStorage::new());
    let keys = server_support::keys();
    let server = IngestServer::new(storage.clone(), ApiKeyChecker::new(keys.clone()), config)
        .expect("server");
    Fixture {
        storage,
        keys,
        server,
    }
}

async fn stored(fixture: &Fixture, app: &str) -> Vec<serde_json::Value> {
    server_support::stored(fixture.storage.as_ref(), app).await
}

#[tokio::test]
async fn i8_the_same_batch_twice_answers_the_same_event_ids_and_stores_one_copy() {
    let fixture = fixture(IngestConfig::default());
    let body =
        json!({"events": [envelope("k-a", "a"), {"event_type": "b", "idempotency_key": "k-b"},
        envelope("k-a", "repeat inside the batch")]})
        .to_string();
    let first = send(
        &fixture.server,
        post("/v1/events/batch", Some(KEY), body.clone()),
    )
    .await;
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let second = send(&fixture.server, post("/v1/events/batch", Some(KEY), body)).await;
    assert_eq!(second.status, 200);
    let ids = |a: &server_support::Answer| -> Vec<String> {
        a.json()["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|r| r["eventId"].as_str().expect("accepted").to_owned())
            .collect()
    };
    let first_ids = ids(&first);
    assert_eq!(first_ids, ids(&second), "same eventIds");
    assert_eq!(
        first_ids[0], first_ids[2],
        "a repeat inside one batch is the first's id"
    );
    assert_eq!(first.json()["acceptedCount"], 3);
    let records = stored(&fixture, "app-1").await;
    assert_eq!(records.len(), 2, "one copy of each: {records:?}");
    assert_eq!(records[0]["id"], first_ids[0].as_str());
    assert_eq!(records[1]["id"], first_ids[1].as_str());
    assert_eq!(records[1]["event_type"], "b");
}

#[tokio::test]
async fn i4_unauthorized_answers_are_upstreams_and_no_key_is_stored() {
    let fixture = fixture(IngestConfig::default());
    let body = json!({"events": [envelope("k", "x")]}).to_string();
    let missing = send(
        &fixture.server,
        post("/v1/events/batch", None, body.clone()),
    )
    .await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.body, b"{\"error\":\"missing API key\"}\n");
    for key in [KEY.to_uppercase(), KEY.replace('1', "2")] {
        let answer = send(
            &fixture.server,
            post("/v1/events/batch", Some(&key), body.clone()),
        )
        .await;
        assert_eq!(answer.status, 401);
        assert_eq!(answer.body, b"{\"error\":\"invalid API key\"}\n");
    }
    fixture.keys.revoke("k1");
    let revoked = send(
        &fixture.server,
        post("/v1/events/batch", Some(KEY), body.clone()),
    )
    .await;
    assert_eq!(revoked.body, b"{\"error\":\"invalid API key\"}\n");

    // The other app's key with this app's events: each event rejected, nothing stored.
    let answer = send(
        &fixture.server,
        post("/v1/events/batch", Some(OTHER_APP_KEY), body),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["rejectedCount"], 1);
    assert!(stored(&fixture, "app-1").await.is_empty());
    assert!(stored(&fixture, "app-2").await.is_empty());

    let ok = send(
        &fixture.server,
        post(
            "/v1/events/batch",
            Some(OTHER_APP_KEY),
            json!({"events":[{"event_type":"x"}]}).to_string(),
        ),
    )
    .await;
    assert_eq!(ok.status, 200);
    let records = stored(&fixture, "app-2").await;
    assert_eq!(records.len(), 1);
    let all = serde_json::to_string(&records).expect("json");
    assert!(!all.contains(KEY) && !all.contains(OTHER_APP_KEY));
}

#[tokio::test]
async fn i3_the_200_body_has_only_the_upstream_fields() {
    let fixture = fixture(IngestConfig::default());
    let body = json!({"events": [envelope("k1", "a"), {"event_type": ""}]}).to_string();
    let answer = send(&fixture.server, post("/v1/events/batch", Some(KEY), body)).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers[header::CONTENT_TYPE], "application/json");
    let json = answer.json();
    let mut keys: Vec<&String> = json.as_object().expect("object").keys().collect();
    keys.sort();
    assert_eq!(keys, ["acceptedCount", "rejectedCount", "results"]);
    assert_eq!(
        json["results"][1],
        json!({"index": 1, "status": "rejected", "error": "event_type: required"})
    );
    let accepted = json["results"][0].as_object().expect("object");
    let mut fields: Vec<&String> = accepted.keys().collect();
    fields.sort();
    assert_eq!(fields, ["eventId", "index", "status"]);

    // A protojson client (unknown fields refused) reads it as IngestEventBatchResponse.
    let desc = descriptor_pool()
        .get_message_by_name("causality.v1.IngestEventBatchResponse")
        .expect("response message");
    let mut de = serde_json::Deserializer::from_slice(&answer.body);
    let parsed = prost_reflect::DynamicMessage::deserialize_with_options(
        desc,
        &mut de,
        &prost_reflect::DeserializeOptions::new().deny_unknown_fields(true),
    )
    .expect("protojson reads the response");
    assert_eq!(
        parsed
            .get_field_by_name("accepted_count")
            .and_then(|v| v.as_i32()),
        Some(1)
    );
}

#[tokio::test]
async fn i5_i6_bad_bodies_are_refused_and_nothing_is_stored() {
    let fixture = fixture(IngestConfig::default());
    let bad = send(
        &fixture.server,
        post("/v1/events/batch", Some(KEY), r#"{"events":"x"}"#),
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["violations"][0]["field"], "events");
    let big = vec![b' '; 11 << 20];
    let too_large = send(&fixture.server, post("/v1/events/batch", Some(KEY), big)).await;
    assert_eq!(too_large.status, 413);
    assert!(too_large.json()["message"].is_string());
    let mut brotli = post("/v1/events/batch", Some(KEY), "x");
    brotli
        .headers_mut()
        .insert(header::CONTENT_ENCODING, "br".parse().expect("value"));
    assert_eq!(send(&fixture.server, brotli).await.status, 415);
    assert!(stored(&fixture, "app-1").await.is_empty());
}

/// The service `serve` runs answers the batch endpoint itself (without the router): every
/// answer, status, headers in their order and body, must be the router's. Two servers on two
/// stores get the same requests, so each stores the events anew; events carry their ids, so
/// the bodies compare byte for byte.
#[tokio::test]
async fn the_served_batch_endpoint_answers_as_the_router() {
    use std::io::Write;
    let with_id = |key: &str, name: &str| {
        let mut event = envelope(key, name);
        event["id"] = json!(format!("id-{key}"));
        event
    };
    let batch = json!({"events": [with_id("a", "x"), with_id("b", ""), with_id("a", "repeat")]})
        .to_string();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(batch.as_bytes()).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let requests = || {
        let mut requests = vec![
            post("/v1/events/batch", Some(KEY), batch.clone()),
            post("/v1/events/batch?x=1", Some(KEY), batch.clone()),
            post("/v1/events/batch", Some(KEY), "not json"),
            post("/v1/events/batch", None, batch.clone()),
            post("/v1/events/batch", Some(&"0".repeat(64)), batch.clone()),
            post("/v1/events/batch", Some(OTHER_APP_KEY), batch.clone()),
            post("/v1/events/batch", Some(KEY), r#"{"events":[]}"#),
            post("/v1/events/batch/", Some(KEY), batch.clone()),
            post("/v1/events/ingest", Some(KEY), batch.clone()),
            Request::get("/v1/events/batch")
                .body(axum::body::Body::empty())
                .expect("request"),
            Request::options("/v1/events/batch")
                .header(header::ORIGIN, "https://app.example")
                .body(axum::body::Body::empty())
                .expect("request"),
        ];
        let mut zipped = post("/v1/events/batch", Some(KEY), gz.clone());
        zipped
            .headers_mut()
            .insert(header::CONTENT_ENCODING, "gzip".parse().expect("value"));
        requests.push(zipped);
        let mut brotli = post("/v1/events/batch", Some(KEY), batch.clone());
        brotli
            .headers_mut()
            .insert(header::CONTENT_ENCODING, "br".parse().expect("value"));
        requests.push(brotli);
        let mut from_browser = post("/v1/events/batch", Some(KEY), batch.clone());
        from_browser.headers_mut().insert(
            header::ORIGIN,
            "https://app.example".parse().expect("value"),
        );
        requests.push(from_browser);
        // Every request but the first names its id; the first gets a fresh one.
        for (i, request) in requests.iter_mut().enumerate().skip(1) {
            request
                .headers_mut()
                .insert("x-request-id", format!("req-{i}").parse().expect("value"));
        }
        requests
    };
    let (routed, served) = (
        fixture(IngestConfig::default()),
        fixture(IngestConfig::default()),
    );
    for (i, (a, b)) in requests().into_iter().zip(requests()).enumerate() {
        let what = format!("request {i}: {} {}", a.method(), a.uri());
        let by_router = send_routed(&routed.server, a).await;
        let served = send(&served.server, b).await;
        assert_eq!(served.status, by_router.status, "{what}");
        assert_eq!(served.text(), by_router.text(), "{what}");
        let headers = |answer: &server_support::Answer| -> Vec<(String, String)> {
            answer
                .headers
                .iter()
                .map(|(name, value)| {
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    // A fresh request id differs between the two; its presence and form do not.
                    if i == 0 && name == "x-request-id" {
                        assert_eq!(value.len(), 36, "{what}: {value}");
                        return (name.to_string(), "fresh".to_owned());
                    }
                    (name.to_string(), value)
                })
                .collect()
        };
        assert_eq!(headers(&served), headers(&by_router), "{what}");
    }
    // The same records stored (but for their arrival times).
    let records = |records: Vec<serde_json::Value>| -> Vec<serde_json::Value> {
        records
            .into_iter()
            .map(server_support::comparable)
            .collect()
    };
    let served_records = records(stored(&served, "app-1").await);
    assert_eq!(served_records.len(), 1, "{served_records:?}");
    assert_eq!(served_records, records(stored(&routed, "app-1").await));
}

#[tokio::test]
async fn gzip_bodies_and_the_single_event_endpoint() {
    use std::io::Write;
    let fixture = fixture(IngestConfig::default());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(
        json!({"events": [envelope("g", "zipped")]})
            .to_string()
            .as_bytes(),
    )
    .expect("gzip");
    let mut request = post("/v1/events/batch", Some(KEY), gz.finish().expect("gzip"));
    request
        .headers_mut()
        .insert(header::CONTENT_ENCODING, "gzip".parse().expect("value"));
    assert_eq!(send(&fixture.server, request).await.status, 200);

    let single = json!({"event": envelope("s", "single")}).to_string();
    let answer = send(
        &fixture.server,
        post("/v1/events/ingest", Some(KEY), single),
    )
    .await;
    assert_eq!(answer.status, 200);
    let json = answer.json();
    assert_eq!(json["status"], "accepted");
    assert_eq!(json.as_object().expect("object").len(), 2);
    let rejected = json!({"event": envelope("s2", "")}).to_string();
    let answer = send(
        &fixture.server,
        post("/v1/events/ingest", Some(KEY), rejected),
    )
    .await;
    assert_eq!(answer.status, 400);
    let records = stored(&fixture, "app-1").await;
    assert_eq!(records.len(), 2);
    assert_eq!(records[1]["id"], json["eventId"]);
}

#[tokio::test(start_paused = true)]
async fn i12_rate_limit_is_429_with_retry_after() {
    let fixture = fixture(IngestConfig::default().with_rate_limit(1, 1));
    let body = json!({"events": [{"event_type": "x"}]}).to_string();
    assert_eq!(
        send(
            &fixture.server,
            post("/v1/events/batch", Some(KEY), body.clone())
        )
        .await
        .status,
        200
    );
    let limited = send(
        &fixture.server,
        post("/v1/events/batch", Some(KEY), body.clone()),
    )
    .await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.headers[header::RETRY_AFTER], "1");
    assert!(limited.json()["message"].is_string());
    // Other apps have their own bucket; after the wait the app may send again.
    assert_eq!(
        send(
            &fixture.server,
            post("/v1/events/batch", Some(OTHER_APP_KEY), body.clone())
        )
        .await
        .status,
        200
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        send(&fixture.server, post("/v1/events/batch", Some(KEY), body))
            .await
            .status,
        200
    );
}

/// A stream that refuses every append (closed) cannot be fixed by retrying: 500 with the
/// reason and no `Retry-After` (before, every storage error but TooLarge was a 503 that every
/// retry repeated). A storage that is down is 503: see the I10 cases of the storage matrix.
#[tokio::test]
async fn a_permanent_storage_refusal_is_500_with_nothing_written() {
    let fixture = fixture(IngestConfig::default());
    let body = json!({"events": [{"event_type": "first", "idempotency_key": "f"}]}).to_string();
    assert_eq!(
        send(&fixture.server, post("/v1/events/batch", Some(KEY), body))
            .await
            .status,
        200
    );
    // A closed stream refuses every append: the request fails as a whole.
    let name = app_stream("app-1").expect("name");
    fixture
        .storage
        .append(&name, AppendRequest::close_only())
        .await
        .expect("closed");
    let body = json!({"events": [{"event_type": "second"}, {"event_type": "third"}]}).to_string();
    let answer = send(&fixture.server, post("/v1/events/batch", Some(KEY), body)).await;
    assert_eq!(answer.status, 500);
    assert!(answer.headers.get(header::RETRY_AFTER).is_none());
    let message = answer.json()["message"]
        .as_str()
        .expect("message")
        .to_owned();
    assert!(message.contains("closed"), "{message}");
    assert_eq!(stored(&fixture, "app-1").await.len(), 1);
}

/// The app's stream made by something else with another content type: the server's create
/// conflicts, which no retry fixes: 500 naming the stream, not a 503 forever.
#[tokio::test]
async fn an_app_stream_with_another_configuration_is_500() {
    let fixture = fixture(IngestConfig::default());
    let name = app_stream("app-1").expect("name");
    fixture
        .storage
        .create(
            &name,
            courier_traits::storage::StreamConfig::with_content_type("text/plain"),
            Vec::new(),
        )
        .await
        .expect("created");
    let body = json!({"events": [{"event_type": "x"}]}).to_string();
    let answer = send(&fixture.server, post("/v1/events/batch", Some(KEY), body)).await;
    assert_eq!(answer.status, 500, "{}", answer.text());
    assert!(answer.headers.get(header::RETRY_AFTER).is_none());
    let message = answer.json()["message"]
        .as_str()
        .expect("message")
        .to_owned();
    assert!(message.contains("ingest/app-1"), "{message}");
    assert!(stored(&fixture, "app-1").await.is_empty());
}

#[tokio::test]
async fn cors_preflight_request_id_health_and_ready() {
    let fixture = fixture(IngestConfig::default());
    let preflight = Request::options("/v1/events/batch")
        .header(header::ORIGIN, "https://app.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .body(axum::body::Body::empty())
        .expect("request");
    let answer = send(&fixture.server, preflight).await;
    assert_eq!(answer.status, 204);
    assert_eq!(answer.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert!(
        answer.headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
            .to_str()
            .expect("ascii")
            .contains("X-API-Key")
    );

    let mut request = post("/v1/events/batch", None, "{}");
    request
        .headers_mut()
        .insert("x-request-id", "req-42".parse().expect("value"));
    let answer = send(&fixture.server, request).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.headers["x-request-id"], "req-42");
    let answer = send(
        &fixture.server,
        Request::get("/health")
            .body(axum::body::Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(answer.status, 200);
    let generated = answer.headers["x-request-id"].to_str().expect("ascii");
    assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated}");
    let ready = send(
        &fixture.server,
        Request::get("/ready")
            .body(axum::body::Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(ready.status, 200);
}

/// The Rust SDK against the router over loopback HTTP: everything tracked is stored once.
#[tokio::test]
async fn the_sdk_delivers_through_the_router() {
    let fixture = fixture(IngestConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(fixture.server.clone().serve(listener, async move {
        let _ = stopped.await;
    }));
    let client = IngestClient::builder(format!("http://{addr}"), KEY, "app-1")
        .batch_size(7)
        .build()
        .expect("client");
    for i in 0..50_i64 {
        client
            .track(Event::custom("numbered").param("seq", i))
            .expect("tracked");
    }
    tokio::time::timeout(Duration::from_secs(30), client.flush())
        .await
        .expect("flush in time")
        .expect("flushed");
    let report = client.close().await;
    assert_eq!(report.delivered, 50);
    let _ = stop.send(());
    serving.await.expect("joined").expect("served");
    let records = stored(&fixture, "app-1").await;
    let seqs: Vec<i64> = records
        .iter()
        .map(|r| {
            r["custom_event"]["int_params"]["seq"]
                .as_i64()
                .expect("seq")
        })
        .collect();
    assert_eq!(seqs, (0..50).collect::<Vec<_>>());
}

/// An id or idempotency key longer than a storage keeps (1 024 bytes) rejects that event
/// alone; before, the keyed append refused the whole batch and the request was a 503 that
/// every retry would repeat.
#[tokio::test]
async fn an_over_long_id_or_key_rejects_only_its_event() {
    let fixture = fixture(IngestConfig::default());
    let mut long_id = envelope("k-1", "x");
    long_id["id"] = json!("i".repeat(1025));
    let body = json!({"events": [
        envelope("k-0", "kept"),
        long_id,
        envelope(&"k".repeat(1025), "x"),
        {"event_type": "x", "idempotency_key": "s".repeat(1025)},
    ]})
    .to_string();
    let answer = send(&fixture.server, post("/v1/events/batch", Some(KEY), body)).await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let json = answer.json();
    assert_eq!(json["acceptedCount"], 1);
    let errors: Vec<&str> = json["results"]
        .as_array()
        .expect("results")
        .iter()
        .skip(1)
        .map(|r| r["error"].as_str().expect("rejected"))
        .collect();
    assert!(errors[0].starts_with("id:"), "{errors:?}");
    assert!(errors[1].starts_with("idempotency_key:"), "{errors:?}");
    assert!(errors[2].starts_with("idempotency_key:"), "{errors:?}");
    assert_eq!(stored(&fixture, "app-1").await.len(), 1);
}

/// Serves `fixture`'s server on a loopback port until the test ends; its address.
async fn serve_on_loopback(fixture: &Fixture) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(
        fixture
            .server
            .clone()
            .serve(listener, std::future::pending()),
    );
    addr
}

/// A client that stops midway through a request's head is closed, unanswered, 30 s after it
/// connected: it holds no task of the server for longer (paused clock).
#[tokio::test(start_paused = true)]
async fn a_request_head_that_stops_midway_is_closed_after_30_s() {
    let fixture = fixture(IngestConfig::default());
    let addr = serve_on_loopback(&fixture).await;
    courier_testkit::http::assert_stalled_head_closed(
        addr,
        b"POST /v1/events/batch HTTP/1.1\r\nHost: te",
        Duration::from_secs(30),
    )
    .await;
}

/// A batch whose body stops midway fails 30 s after its last byte: the connection is closed
/// and nothing of the batch is stored (paused clock).
#[tokio::test(start_paused = true)]
async fn a_batch_body_that_stops_midway_is_closed_after_30_s_and_nothing_is_stored() {
    let fixture = fixture(IngestConfig::default());
    let addr = serve_on_loopback(&fixture).await;
    let body = json!({"events": [envelope("k-a", "a")]}).to_string();
    let (sent, _) = body.split_at(body.len() - 3);
    let request = format!(
        "POST /v1/events/batch HTTP/1.1\r\nHost: test\r\nx-api-key: {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{sent}",
        body.len()
    );
    let answer = courier_testkit::http::assert_stalled_body_closed(
        addr,
        request.as_bytes(),
        Duration::from_secs(30),
    )
    .await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "an error answer or none: {answer}"
    );
    assert!(stored(&fixture, "app-1").await.is_empty());
}
