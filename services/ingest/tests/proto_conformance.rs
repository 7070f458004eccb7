//! I18: the SDK's requests checked against the vendored upstream protos.
//!
//! The checker needs no system `protoc`: `protox` (a protobuf compiler in Rust) parses
//! `proto/causality/v1/service.proto` and its imports into descriptors, then
//!
//! 1. `prost-reflect` reads each request body as an `IngestEventBatchRequest` under protojson
//!    rules with unknown fields refused, exactly what a protojson server does;
//! 2. a walk of the raw JSON against the same descriptors checks what protojson lets pass but
//!    the spec requires: every key is the field's *proto* name (protojson also takes the JSON
//!    name), map values have the field's type, and each envelope has exactly one payload key.
//!
//! Both checks are shown to fail on a body with an unknown field and on one with a JSON name.

mod common;

use std::path::Path;

use common::{ScriptedServer, builder};
use courier_ingest::sdk::{Compression, Event};
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor,
};
use serde_json::Value;

fn pool() -> DescriptorPool {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let mut compiler = protox::Compiler::new([root]).expect("proto root");
    compiler.include_imports(true);
    compiler
        .open_file("causality/v1/service.proto")
        .expect("the vendored protos compile");
    compiler.descriptor_pool()
}

fn batch_request(pool: &DescriptorPool) -> MessageDescriptor {
    pool.get_message_by_name("causality.v1.IngestEventBatchRequest")
        .expect("IngestEventBatchRequest")
}

/// Reads `body` as protojson, refusing unknown fields.
fn parse_protojson(desc: MessageDescriptor, body: &[u8]) -> Result<DynamicMessage, String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let message = DynamicMessage::deserialize_with_options(
        desc,
        &mut de,
        &DeserializeOptions::new().deny_unknown_fields(true),
    )
    .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(message)
}

/// Checks that `value` uses only proto field names of `desc`, with values of the field's
/// shape, and at most one member of each oneof. Returns the path of the first violation.
fn walk(desc: &MessageDescriptor, value: &Value, path: &str) -> Result<(), String> {
    let object = value
        .as_object()
        .ok_or_else(|| format!("{path}: expected an object for {}", desc.full_name()))?;
    let mut oneof_members = std::collections::HashMap::new();
    for (key, v) in object {
        let field = desc.get_field_by_name(key).ok_or_else(|| {
            format!(
                "{path}.{key}: no field with this proto name in {}",
                desc.full_name()
            )
        })?;
        if let Some(oneof) = field.containing_oneof() {
            let count = oneof_members.entry(oneof.name().to_owned()).or_insert(0);
            *count += 1;
            if *count > 1 {
                return Err(format!(
                    "{path}: more than one member of oneof {}",
                    oneof.name()
                ));
            }
        }
        walk_field(&field, v, &format!("{path}.{key}"))?;
    }
    Ok(())
}

fn walk_field(field: &FieldDescriptor, value: &Value, path: &str) -> Result<(), String> {
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else {
            return Err(format!("{path}: map without an entry message"));
        };
        let value_field = entry.map_entry_value_field();
        let map = value
            .as_object()
            .ok_or_else(|| format!("{path}: expected a map"))?;
        for (k, v) in map {
            walk_value(&value_field.kind(), v, &format!("{path}[{k}]"))?;
        }
        return Ok(());
    }
    if field.is_list() {
        let items = value
            .as_array()
            .ok_or_else(|| format!("{path}: expected a list"))?;
        for (i, item) in items.iter().enumerate() {
            walk_value(&field.kind(), item, &format!("{path}[{i}]"))?;
        }
        return Ok(());
    }
    walk_value(&field.kind(), value, path)
}

fn walk_value(kind: &Kind, value: &Value, path: &str) -> Result<(), String> {
    let ok = match kind {
        Kind::Message(m) => return walk(m, value, path),
        Kind::String => value.is_string(),
        Kind::Bool => value.is_boolean(),
        Kind::Int64
        | Kind::Sint64
        | Kind::Sfixed64
        | Kind::Int32
        | Kind::Sint32
        | Kind::Sfixed32 => value.is_i64(),
        Kind::Uint64 | Kind::Fixed64 | Kind::Uint32 | Kind::Fixed32 => value.is_u64(),
        Kind::Double | Kind::Float => {
            value.is_number() || matches!(value.as_str(), Some("NaN" | "Infinity" | "-Infinity"))
        }
        Kind::Enum(e) => value
            .as_str()
            .is_some_and(|name| e.get_value_by_name(name).is_some()),
        Kind::Bytes => value.is_string(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{path}: {value} does not fit {kind:?}"))
    }
}

fn every_kind_of_event() -> Vec<Event> {
    vec![
        Event::custom("signup")
            .param("plan", "pro")
            .param("seats", 5)
            .param("ratio", 0.25)
            .param("nan", f64::NAN)
            .param("trial", true)
            .user_id("u1")
            .session_id("s1"),
        Event::custom("bare"),
        Event::screen_view("home"),
        Event::button_tap("buy", Some("cart")),
        Event::button_tap("close", None),
        Event::user_login("u1", Some("email")),
        Event::user_signup("u2", None),
        Event::user_logout("u1", Some("manual")),
        Event::custom("with-ids")
            .id("0190f0c4-0000-7000-8000-000000000001")
            .correlation_id("req-9")
            .idempotency_key("fixed-key")
            .timestamp_ms(1_700_000_000_123),
    ]
}

async fn sdk_bodies(compression: Compression) -> Vec<Vec<u8>> {
    let server = ScriptedServer::new([]);
    let client = builder(&server)
        .compression(compression)
        .build()
        .expect("client");
    for event in every_kind_of_event() {
        client.track(event).expect("tracked");
    }
    client.flush().await.expect("flushed");
    let report = client.close().await;
    assert_eq!(report.delivered, every_kind_of_event().len() as u64);
    server.seen().into_iter().map(|s| s.body).collect()
}

#[tokio::test(start_paused = true)]
async fn i18_sdk_output_parses_as_the_upstream_batch_request() {
    let pool = pool();
    let request = batch_request(&pool);
    let envelope = pool
        .get_message_by_name("causality.v1.EventEnvelope")
        .expect("EventEnvelope");
    let payload = envelope
        .oneofs()
        .find(|o| o.name() == "payload")
        .expect("payload oneof");
    for compression in [Compression::None, Compression::Gzip] {
        let bodies = sdk_bodies(compression).await;
        assert!(!bodies.is_empty());
        let mut events = 0;
        for body in &bodies {
            let message = parse_protojson(request.clone(), body)
                .unwrap_or_else(|e| panic!("not an IngestEventBatchRequest: {e}"));
            let json: Value = serde_json::from_slice(body).expect("json");
            walk(&request, &json, "$").unwrap_or_else(|e| panic!("{e}"));
            let parsed = message.get_field_by_name("events").expect("events");
            for event in parsed.as_list().expect("a list") {
                let event = event.as_message().expect("an envelope");
                let set: Vec<_> = payload.fields().filter(|f| event.has_field(f)).collect();
                assert_eq!(set.len(), 1, "exactly one payload: {event:?}");
                for required in ["app_id", "device_id", "idempotency_key"] {
                    let value = event.get_field_by_name(required).expect(required);
                    assert!(
                        !value.as_str().unwrap_or_default().is_empty(),
                        "{required} empty"
                    );
                }
                let ts = event
                    .get_field_by_name("timestamp_ms")
                    .expect("timestamp_ms");
                assert!(ts.as_i64().unwrap_or_default() > 0);
                events += 1;
            }
        }
        assert_eq!(events, every_kind_of_event().len());
    }
}

#[tokio::test(start_paused = true)]
async fn i18_checker_refuses_unknown_fields_and_json_names() {
    let pool = pool();
    let request = batch_request(&pool);
    let body = sdk_bodies(Compression::None).await.remove(0);
    let text = String::from_utf8(body).expect("utf-8");
    assert!(parse_protojson(request.clone(), text.as_bytes()).is_ok());

    // An unknown field in an envelope (what upstream's Go SDK sends: `event_type`).
    let unknown = text.replacen(r#""app_id""#, r#""event_type":"x","app_id""#, 1);
    let error = parse_protojson(request.clone(), unknown.as_bytes()).expect_err("refused");
    assert!(error.contains("event_type"), "{error}");
    let json: Value = serde_json::from_str(&unknown).expect("json");
    assert!(walk(&request, &json, "$").is_err());

    // A JSON name: protojson accepts it, the walk (proto names only) does not.
    let json_name = text.replacen(r#""app_id""#, r#""appId""#, 1);
    assert!(parse_protojson(request.clone(), json_name.as_bytes()).is_ok());
    let json: Value = serde_json::from_str(&json_name).expect("json");
    let error = walk(&request, &json, "$").expect_err("refused");
    assert!(error.contains("appId"), "{error}");

    // Two payloads in one envelope.
    let two = text.replacen(
        r#""app_id""#,
        r#""screen_view":{"screen_name":"x"},"app_id""#,
        1,
    );
    let json: Value = serde_json::from_str(&two).expect("json");
    assert!(
        walk(&request, &json, "$")
            .expect_err("refused")
            .contains("oneof")
    );
}
