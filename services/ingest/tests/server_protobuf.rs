//! Binary protobuf bodies: encoded here from the vendored `.proto` files (compiled in-process
//! by protox, independent of the server's checked-in descriptor set), answered and stored
//! exactly as the same batch in JSON.

#![cfg(feature = "server")]

mod server_support;

use std::sync::Arc;

use courier_impls::memory::MemoryStreamStorage;
use courier_ingest::server::IngestConfig;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage};
use serde_json::{Value, json};
use server_support::{
    KEY, comparable, descriptor_pool, envelope, post, post_as, send, server, stored,
};

/// `json` (protojson) as the binary encoding of `message`.
fn encode(pool: &DescriptorPool, message: &str, json: &Value) -> Vec<u8> {
    let desc = pool.get_message_by_name(message).expect("message");
    DynamicMessage::deserialize_with_options(
        desc,
        json,
        &DeserializeOptions::new().deny_unknown_fields(true),
    )
    .expect("valid protojson")
    .encode_to_vec()
}

/// Envelopes in both name forms, each with its own id, one rejected (no device id).
fn batch() -> Value {
    let mut first = envelope("k-1", "first");
    first["id"] = json!("id-1");
    first["device_context"] = json!({"platform": "PLATFORM_IOS", "os_version": "17"});
    let mut second = envelope("k-2", "second");
    second["device_id"] = json!("");
    let third = json!({"id": "id-3", "appId": "app-1", "deviceId": "d", "timestampMs": "1770000000001",
        "idempotencyKey": "k-3", "screenView": {"screenName": "home"}});
    json!({"events": [first, second, third]})
}

#[tokio::test]
async fn a_protobuf_batch_is_answered_and_stored_as_the_same_batch_in_json() {
    let pool = descriptor_pool();
    let bytes = encode(&pool, "causality.v1.IngestEventBatchRequest", &batch());
    let json_node = server(
        Arc::new(MemoryStreamStorage::new()),
        IngestConfig::default(),
    );
    let proto_storage = Arc::new(MemoryStreamStorage::new());
    let proto_node = server(proto_storage.clone(), IngestConfig::default());

    let from_json = send(
        &json_node,
        post("/v1/events/batch", Some(KEY), batch().to_string()),
    )
    .await;
    assert_eq!(from_json.status, 200, "{}", from_json.text());
    for content_type in ["application/x-protobuf", "application/octet-stream"] {
        let answer = send(
            &proto_node,
            post_as("/v1/events/batch", Some(KEY), content_type, bytes.clone()),
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert_eq!(answer.json(), from_json.json(), "{content_type}");
    }
    assert_eq!(
        from_json.json()["results"][1]["error"],
        "device_id: required"
    );

    let records: Vec<Value> = stored(proto_storage.as_ref(), "app-1")
        .await
        .into_iter()
        .map(comparable)
        .collect();
    assert_eq!(records.len(), 2, "one copy each: {records:?}");
    assert_eq!(records[0]["device_context"]["platform"], "PLATFORM_IOS");
    assert_eq!(records[1]["timestamp_ms"], 1_770_000_000_001_i64);
    assert_eq!(records[1]["event_type"], "screen_view");
    let json_storage = Arc::new(MemoryStreamStorage::new());
    let json_node = server(json_storage.clone(), IngestConfig::default());
    send(
        &json_node,
        post("/v1/events/batch", Some(KEY), batch().to_string()),
    )
    .await;
    let from_json_records: Vec<Value> = stored(json_storage.as_ref(), "app-1")
        .await
        .into_iter()
        .map(comparable)
        .collect();
    assert_eq!(records, from_json_records);
}

#[tokio::test]
async fn the_single_event_endpoint_reads_protobuf_too() {
    let pool = descriptor_pool();
    let storage = Arc::new(MemoryStreamStorage::new());
    let node = server(storage.clone(), IngestConfig::default());
    let bytes = encode(
        &pool,
        "causality.v1.IngestEventRequest",
        &json!({"event": envelope("k-s", "single")}),
    );
    let answer = send(
        &node,
        post_as(
            "/v1/events/ingest",
            Some(KEY),
            "application/x-protobuf",
            bytes,
        ),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["status"], "accepted");
    let records = stored(storage.as_ref(), "app-1").await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["id"], answer.json()["eventId"]);
}

#[tokio::test]
async fn bad_protobuf_bodies_are_400_naming_the_field_and_nothing_is_stored() {
    let pool = descriptor_pool();
    let storage = Arc::new(MemoryStreamStorage::new());
    let node = server(storage.clone(), IngestConfig::default());
    let protobuf = |bytes: Vec<u8>| {
        post_as(
            "/v1/events/batch",
            Some(KEY),
            "application/x-protobuf",
            bytes,
        )
    };
    let valid = encode(
        &pool,
        "causality.v1.IngestEventBatchRequest",
        &json!({"events": [envelope("k", "x")]}),
    );

    // Truncated in the middle of the event.
    let answer = send(&node, protobuf(valid[..valid.len() - 3].to_vec())).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert_eq!(answer.json()["violations"][0]["field"], "body");

    // An unknown field (number 99, varint) inside the first event.
    let desc = pool
        .get_message_by_name("causality.v1.IngestEventBatchRequest")
        .expect("message");
    let mut message = DynamicMessage::decode(desc, valid.as_slice()).expect("decodes");
    let mut event = message
        .get_field_by_name("events")
        .expect("events")
        .as_list()
        .expect("list")[0]
        .as_message()
        .expect("event")
        .encode_to_vec();
    event.extend_from_slice(&[0x98, 0x06, 0x01]);
    let mut with_unknown = Vec::new();
    prost::encoding::bytes::encode(1, &event, &mut with_unknown);
    let answer = send(&node, protobuf(with_unknown)).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    let violation = &answer.json()["violations"][0];
    assert_eq!(violation["field"], "events[0]");
    assert!(
        violation["description"]
            .as_str()
            .expect("text")
            .contains("99"),
        "{violation}"
    );

    // No events at all.
    message.clear_field_by_name("events");
    let answer = send(&node, protobuf(message.encode_to_vec())).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert_eq!(answer.json()["violations"][0]["field"], "events");

    // JSON sent as protobuf is not a protobuf message.
    let answer = send(
        &node,
        protobuf(
            json!({"events": [envelope("k", "x")]})
                .to_string()
                .into_bytes(),
        ),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert!(stored(storage.as_ref(), "app-1").await.is_empty());
}
