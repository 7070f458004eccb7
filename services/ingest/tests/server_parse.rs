//! The server's parsing and validation of both event shapes (spec I1, I2, I5, I7's parsing
//! part, I18's server side), through the public `EventParser`.

#![cfg(feature = "server")]

mod common;
mod server_support;

use common::{ScriptedServer, builder};
use courier_ingest::sdk::Event;
use courier_ingest::server::{
    AcceptedEvent, EventOutcome, EventParser, IngestContext, Limits, RequestError, Violation,
};
use serde_json::{Value, json};
use server_support::GO_SDK_BODY;

const CONTEXT: IngestContext<'static> = IngestContext {
    app_id: "app-1",
    received_ms: 1_770_000_000_000,
};

fn parser() -> EventParser {
    EventParser::new(Limits::default()).expect("schema")
}

fn valid(outcome: &EventOutcome) -> &AcceptedEvent {
    match outcome {
        EventOutcome::Valid(event) => event,
        EventOutcome::Rejected(error) => panic!("rejected: {error}"),
    }
}

fn record(outcome: &EventOutcome) -> Value {
    serde_json::from_slice(&valid(outcome).record).expect("record is JSON")
}

fn violations(result: Result<Vec<EventOutcome>, RequestError>) -> Vec<Violation> {
    match result {
        Err(RequestError::BadRequest(violations)) => violations,
        other => panic!("expected 400, got {other:?}"),
    }
}

#[test]
fn i1_the_go_sdk_body_is_accepted_and_stored_with_timestamp_ms() {
    let outcomes = parser()
        .parse_batch(GO_SDK_BODY.as_bytes(), &CONTEXT)
        .expect("200");
    assert_eq!(outcomes.len(), 2);
    let first = valid(&outcomes[0]);
    assert_eq!(
        first.idempotency_key,
        "7b0c8f3e-2d6a-4f0e-9a51-3c2f1d9e8b70"
    );
    let id = uuid::Uuid::parse_str(&first.id).expect("uuid");
    assert_eq!(id.get_version_num(), 7);
    assert_eq!(
        record(&outcomes[0]),
        json!({
            "event_type": "signup", "timestamp_ms": 1_770_458_400_000_i64, "user_id": "u1",
            "session_id": "s1", "app_id": "app-1",
            "idempotency_key": "7b0c8f3e-2d6a-4f0e-9a51-3c2f1d9e8b70",
            "metadata": {"plan": "pro", "seats": "5"},
            "server_context": {"hostname": "web-1", "go_version": "go1.23.4",
                "sdk_version": "0.1.0", "os": "linux", "arch": "amd64"},
            "id": first.id, "received_ms": CONTEXT.received_ms,
        })
    );
    let second = record(&outcomes[1]);
    assert_eq!(second["timestamp_ms"], 1_770_458_401_500_i64 - 3_600_000);
    assert_eq!(
        second["app_id"], "app-1",
        "the key's app fills a missing app_id"
    );
    assert!(second.get("timestamp").is_none());
}

#[test]
fn i2_json_names_with_string_int64_and_enum_names_store_what_proto_names_store() {
    let json_names = json!({"events": [{
        "id": "e-1", "appId": "app-1", "deviceId": "d-1", "timestampMs": "1770000000123",
        "correlationId": "c-1", "idempotencyKey": "k-1",
        "deviceContext": {"platform": "PLATFORM_IOS", "osVersion": "17.0", "screenWidth": 1170,
            "networkType": "NETWORK_TYPE_WIFI", "isEmulator": true},
        "purchaseComplete": {"orderId": "o-1", "totalCents": "1999", "itemCount": 2,
            "items": [{"productId": "p-1", "priceCents": "999", "quantity": 1}]}
    }]});
    let proto_names = json!({"events": [{
        "id": "e-1", "app_id": "app-1", "device_id": "d-1", "timestamp_ms": 1_770_000_000_123_i64,
        "correlation_id": "c-1", "idempotency_key": "k-1",
        "device_context": {"platform": 1, "os_version": "17.0", "screen_width": 1170,
            "network_type": 1, "is_emulator": true},
        "purchase_complete": {"order_id": "o-1", "total_cents": 1999, "item_count": 2,
            "items": [{"product_id": "p-1", "price_cents": 999, "quantity": 1}]}
    }]});
    let parser = parser();
    let a = parser
        .parse_batch(json_names.to_string().as_bytes(), &CONTEXT)
        .expect("json names");
    let b = parser
        .parse_batch(proto_names.to_string().as_bytes(), &CONTEXT)
        .expect("proto names");
    assert_eq!(
        valid(&a[0]).record,
        valid(&b[0]).record,
        "stored records identical"
    );
    assert_eq!(valid(&a[0]).id, "e-1");
    assert_eq!(valid(&a[0]).idempotency_key, "k-1");
    assert_eq!(
        record(&a[0]),
        json!({
            "id": "e-1", "app_id": "app-1", "device_id": "d-1",
            "timestamp_ms": 1_770_000_000_123_i64, "correlation_id": "c-1",
            "idempotency_key": "k-1",
            "device_context": {"platform": "PLATFORM_IOS", "os_version": "17.0",
                "screen_width": 1170, "network_type": "NETWORK_TYPE_WIFI", "is_emulator": true},
            "purchase_complete": {"order_id": "o-1", "total_cents": 1999, "item_count": 2,
                "items": [{"product_id": "p-1", "price_cents": 999, "quantity": 1}]},
            "event_type": "purchase_complete", "received_ms": CONTEXT.received_ms,
        })
    );
}

#[test]
fn an_envelope_without_id_or_key_gets_a_uuid_v7_and_a_fresh_key() {
    let body = json!({"events": [{"app_id": "app-1", "device_id": "d", "timestamp_ms": 1,
        "screen_view": {"screen_name": "home"}}]});
    let outcomes = parser()
        .parse_batch(body.to_string().as_bytes(), &CONTEXT)
        .expect("200");
    let event = valid(&outcomes[0]);
    let id = uuid::Uuid::parse_str(&event.id).expect("uuid");
    assert_eq!(id.get_version_num(), 7);
    assert_eq!(
        uuid::Uuid::parse_str(&event.idempotency_key)
            .expect("uuid")
            .get_version_num(),
        4
    );
    let stored = record(&outcomes[0]);
    assert_eq!(stored["id"], event.id.as_str());
    assert_eq!(stored["idempotency_key"], event.idempotency_key.as_str());
}

#[test]
fn i5_bodies_that_are_not_batches_are_400_naming_the_field() {
    let parser = parser();
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "body"),
        (r#"{"events":[{"event_type":"x"}"#.into(), "body"),
        ("[]".into(), "body"),
        (r#"{"events":"x"}"#.into(), "events"),
        (r#"{"events":{}}"#.into(), "events"),
        (r#"{"events":null}"#.into(), "events"),
        (r#"{"events":[]}"#.into(), "events"),
        ("{}".into(), "events"),
        (
            r#"{"events":[{"event_type":"x"}],"extra":1}"#.into(),
            "extra",
        ),
        (r#"{"events":[],"events":[]}"#.into(), "events"),
        (r#"{"events":[1]}"#.into(), "events[0]"),
        (
            r#"{"events":[{"event_type":"x"},{"event_type":"x","colour":"red"}]}"#.into(),
            "events[1].colour",
        ),
        (
            r#"{"events":[{"event_type":"x","server_context":{"cpu":"x"}}]}"#.into(),
            "events[0].server_context.cpu",
        ),
        (
            r#"{"events":[{"event_type":"x","metadata":{"n":1}}]}"#.into(),
            "events[0].metadata.n",
        ),
        (
            r#"{"events":[{"event_type":"x","user_id":"a","user_id":"b"}]}"#.into(),
            "events[0].user_id",
        ),
        (
            r#"{"events":[{"app_id":"app-1","colour":"red"}]}"#.into(),
            "events[0].colour",
        ),
        (
            r#"{"events":[{"app_id":"app-1","device_context":{"cpu":1}}]}"#.into(),
            "events[0].device_context.cpu",
        ),
        // The second of the two names in key order is the one reported (`appId` sorts first).
        (
            r#"{"events":[{"app_id":"app-1","appId":"app-1"}]}"#.into(),
            "events[0].app_id",
        ),
        (
            r#"{"events":[{"app_id":"app-1","app_id":"app-1"}]}"#.into(),
            "events[0].app_id",
        ),
        (
            r#"{"events":[{"screen_view":{"screen_name":"a"},"button_tap":{"button_id":"b"}}]}"#
                .into(),
            "events[0].screen_view",
        ),
        (
            r#"{"events":[{"purchase_complete":{"order_id":"o","items":[{"sku":"x"}]}}]}"#.into(),
            "events[0].purchase_complete.items[0].sku",
        ),
        (
            r#"{"events":[{"timestamp_ms":"soon"}]}"#.into(),
            "events[0]",
        ),
        (
            r#"{"events":[{"device_context":{"platform":"PLATFORM_MARS"}}]}"#.into(),
            "events[0]",
        ),
    ];
    for (body, field) in cases {
        let found = violations(parser.parse_batch(body.as_bytes(), &CONTEXT));
        assert_eq!(found[0].field, field, "{body}: {found:?}");
        assert!(!found[0].description.is_empty());
    }
}

#[test]
fn i5_more_than_the_event_limit_is_400_and_the_limit_itself_is_fine() {
    let parser = parser();
    let batch = |n: usize| {
        let events = vec![r#"{"event_type":"x"}"#; n].join(",");
        format!(r#"{{"events":[{events}]}}"#)
    };
    let found = violations(parser.parse_batch(batch(10_001).as_bytes(), &CONTEXT));
    assert_eq!(found[0].field, "events");
    assert!(found[0].description.contains("10000"), "{found:?}");
    assert_eq!(
        parser
            .parse_batch(batch(10_000).as_bytes(), &CONTEXT)
            .expect("at the limit")
            .len(),
        10_000
    );
    let small = EventParser::new(Limits::default().with_max_events(2)).expect("schema");
    assert!(small.parse_batch(batch(3).as_bytes(), &CONTEXT).is_err());
}

#[test]
fn i7_invalid_events_are_rejected_alone_at_their_index() {
    let ok = json!({"app_id": "app-1", "device_id": "d", "timestamp_ms": 5,
        "custom_event": {"event_name": "e"}});
    let with = |patch: Value| {
        let mut event = ok.clone();
        for (k, v) in patch.as_object().expect("object") {
            if v.is_null() {
                event.as_object_mut().expect("object").remove(k);
            } else {
                event[k] = v.clone();
            }
        }
        event
    };
    let big = "x".repeat(300 << 10);
    let events = vec![
        ok.clone(),                                             // 0 ok
        with(json!({"custom_event": null})),                    // 1 no payload
        with(json!({"timestamp_ms": 0})),                       // 2
        with(json!({"device_id": ""})),                         // 3
        with(json!({"custom_event": {"event_name": big}})),     // 4 300 KiB
        json!({"event_type": "x", "timestamp": "yesterday"}),   // 5 bad RFC 3339
        with(json!({"app_id": "app-2"})),                       // 6 another app
        json!({"event_type": "x", "app_id": "app-2"}),          // 7 another app
        with(json!({"custom_event": {"event_name": ""}})),      // 8 min_len
        with(json!({"custom_event": null, "screen_view": {}})), // 9 min_len
        with(json!({"app_id": null})),                          // 10 app_id missing
        with(json!({"timestamp_ms": null})),                    // 11 no timestamp_ms
        json!({"event_type": ""}),                              // 12 empty event_type
        json!({"event_type": "x"}),                             // 13 ok
        with(json!({"idempotency_key": "same"})),               // 14 ok
        with(json!({"idempotency_key": "same"})),               // 15 ok (dedup is the storage's)
    ];
    let body = json!({"events": events}).to_string();
    let outcomes = parser()
        .parse_batch(body.as_bytes(), &CONTEXT)
        .expect("200");
    let rejected: Vec<(usize, &str)> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, o)| match o {
            EventOutcome::Rejected(error) => Some((i, error.as_str())),
            EventOutcome::Valid(_) => None,
        })
        .collect();
    let indices: Vec<usize> = rejected.iter().map(|(i, _)| *i).collect();
    assert_eq!(
        indices,
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
        "{rejected:?}"
    );
    let errors: Vec<&str> = rejected.iter().map(|(_, e)| *e).collect();
    assert!(errors[0].starts_with("payload:"), "{}", errors[0]);
    assert!(errors[1].starts_with("timestamp_ms:"), "{}", errors[1]);
    assert_eq!(errors[2], "device_id: required");
    assert!(
        errors[3].contains("over the limit of 262144 bytes"),
        "{}",
        errors[3]
    );
    assert!(errors[4].starts_with("timestamp:"), "{}", errors[4]);
    assert!(errors[5].starts_with("app_id:"), "{}", errors[5]);
    assert!(errors[6].starts_with("app_id:"), "{}", errors[6]);
    assert_eq!(errors[7], "custom_event.event_name: required");
    assert_eq!(errors[8], "screen_view.screen_name: required");
    assert_eq!(errors[9], "app_id: required");
    assert!(errors[10].starts_with("timestamp_ms:"), "{}", errors[10]);
    assert_eq!(errors[11], "event_type: required");
    assert_eq!(valid(&outcomes[14]).idempotency_key, "same");
    assert_eq!(valid(&outcomes[15]).idempotency_key, "same");
}

#[test]
fn a_single_event_is_read_from_event() {
    let parser = parser();
    let outcome = parser
        .parse_single(br#"{"event":{"event_type":"x"}}"#, &CONTEXT)
        .expect("parsed");
    assert_eq!(record(&outcome)["event_type"], "x");
    for (body, field) in [
        (r#"{"events":[]}"#, "events"),
        (r#"{}"#, "event"),
        (r#"{"event":{"event_type":"x","x":1}}"#, "event.x"),
    ] {
        match parser.parse_single(body.as_bytes(), &CONTEXT) {
            Err(RequestError::BadRequest(v)) => assert_eq!(v[0].field, field, "{body}"),
            other => panic!("{body}: {other:?}"),
        }
    }
}

/// I18's server side: everything the Rust SDK sends is accepted, every event valid.
#[tokio::test(start_paused = true)]
async fn i18_the_rust_sdk_output_is_accepted() {
    let server = ScriptedServer::new([]);
    let client = builder(&server).build().expect("client");
    let events = [
        Event::custom("signup")
            .param("plan", "pro")
            .param("seats", 5)
            .param("ratio", 0.25)
            .param("trial", true)
            .user_id("u1")
            .session_id("s1"),
        Event::screen_view("home"),
        Event::button_tap("buy", Some("cart")),
        Event::user_login("u1", Some("email")),
        Event::user_signup("u2", None),
        Event::user_logout("u1", Some("manual")),
        Event::custom("with-ids")
            .id("e-9")
            .idempotency_key("fixed-key"),
    ];
    let count = events.len();
    for event in events {
        client.track(event).expect("tracked");
    }
    client.flush().await.expect("flushed");
    client.close().await;
    let parser = parser();
    let context = IngestContext {
        app_id: "app-1",
        received_ms: 1,
    };
    let mut seen = 0;
    for request in server.seen() {
        for outcome in parser.parse_batch(&request.body, &context).expect("200") {
            let stored = record(&outcome);
            assert_eq!(stored["app_id"], "app-1");
            assert_eq!(stored["device_id"], "test-host");
            seen += 1;
        }
    }
    assert_eq!(seen, count);
}
