//! The upstream `EventEnvelope` under protojson rules, validated and normalised.
//!
//! `prost-reflect` reads the values as protojson does (proto or JSON names, int64 as number or
//! string, enums by name or number); before it, a walk over the JSON refuses what it would let
//! pass or report without a path: unknown fields, one field named twice (`app_id` and
//! `appId`), two members of the payload oneof.

use prost_reflect::{
    DeserializeOptions, DynamicMessage, Kind, MessageDescriptor, OneofDescriptor, ReflectMessage,
    Value as ProtoValue,
};
use serde_json::{Map, Value};

use super::canonical;
use super::event::{AcceptedEvent, EventOutcome, IngestContext};
use super::fresh_id;
use super::record_json::{Extra, write_record};
use super::reply::Violation;
use super::schema::Schema;

const NO_PAYLOAD: &str =
    "payload: one event payload (screen_view, button_tap, custom_event, ...) is required";

pub(crate) fn parse(
    schema: &Schema,
    json: Value,
    path: &str,
    context: &IngestContext<'_>,
) -> Result<EventOutcome, Violation> {
    check_fields(&schema.envelope, &json, path)?;
    let json = match json {
        Value::Object(mut object) if canonical::is_canonical(schema, &object) => {
            canonical::drop_defaults(&schema.envelope, &mut object);
            return canonical_event(schema, object, path, context);
        }
        json => json,
    };
    general(schema, json, path, context)
}

/// Any valid envelope, through the protojson reader.
fn general(
    schema: &Schema,
    json: Value,
    path: &str,
    context: &IngestContext<'_>,
) -> Result<EventOutcome, Violation> {
    let mut event = DynamicMessage::deserialize_with_options(
        schema.envelope.clone(),
        &json,
        &DeserializeOptions::new().deny_unknown_fields(true),
    )
    .map_err(|e| Violation::new(path, e.to_string()))?;

    // A message holds one member of a oneof at most: the set fields (a handful) are fewer to
    // look at than the oneof's 29 members.
    let Some(payload) = event
        .fields()
        .map(|(field, _)| field)
        .find(|field| field.containing_oneof().as_ref() == Some(&schema.payload))
    else {
        return Ok(EventOutcome::Rejected(NO_PAYLOAD.into()));
    };
    if let Some(error) = min_len_violation(schema, &event, None) {
        return Ok(EventOutcome::Rejected(error));
    }
    if let Some(body) = event.get_field(&payload).as_message()
        && let Some(error) = min_len_violation(schema, body, Some(payload.name()))
    {
        return Ok(EventOutcome::Rejected(error));
    }
    let app_id = event.get_field_by_name("app_id");
    let timestamp_ms = event
        .get_field_by_name("timestamp_ms")
        .and_then(|v| v.as_i64())
        .unwrap_or_default();
    if let Some(error) = app_and_time_violation(
        app_id.as_deref().and_then(ProtoValue::as_str),
        timestamp_ms,
        context,
    ) {
        return Ok(EventOutcome::Rejected(error.into()));
    }

    let id = fill_string(&mut event, "id", || fresh_id::event_id(context.received_ms));
    let idempotency_key = fill_string(&mut event, "idempotency_key", fresh_id::idempotency_key);
    // Records are a few hundred bytes: one allocation for most.
    let mut record = Vec::with_capacity(512);
    write_record(
        &event,
        &[
            Extra::Str("event_type", payload.name()),
            Extra::Int("received_ms", context.received_ms),
        ],
        &mut record,
    )
    .map_err(|e| Violation::new(path, e.to_string()))?;
    Ok(EventOutcome::Valid(AcceptedEvent {
        id,
        idempotency_key,
        record: record.into(),
    }))
}

/// The field's value if non-empty, else `fresh()` stored into the event.
fn fill_string(event: &mut DynamicMessage, name: &str, fresh: impl FnOnce() -> String) -> String {
    let current = event
        .get_field_by_name(name)
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    if !current.is_empty() {
        return current;
    }
    let value = fresh();
    event.set_field_by_name(name, ProtoValue::String(value.clone()));
    value
}

/// The first `(buf.validate.field).string.min_len` rule `message` breaks, as an error naming
/// the field under `payload` (the oneof member's name) when the message is the payload.
fn min_len_violation(
    schema: &Schema,
    message: &DynamicMessage,
    payload: Option<&str>,
) -> Option<String> {
    first_min_len_violation(schema.min_len(&message.descriptor()), payload, |name| {
        let value = message.get_field_by_name(name)?;
        Some(value.as_str().map_or(0, |s| s.chars().count()))
    })
}

/// [`min_len_violation`] of a canonical event's JSON object (an absent field is empty).
fn min_len_violation_json(
    schema: &Schema,
    desc: &MessageDescriptor,
    object: &Map<String, Value>,
    payload: Option<&str>,
) -> Option<String> {
    first_min_len_violation(schema.min_len(desc), payload, |name| {
        Some(
            object
                .get(name)
                .and_then(Value::as_str)
                .map_or(0, |s| s.chars().count()),
        )
    })
}

/// The first of `rules` (field name, minimum characters) whose field is shorter, as its error.
fn first_min_len_violation(
    rules: &[(String, u64)],
    payload: Option<&str>,
    chars: impl Fn(&str) -> Option<usize>,
) -> Option<String> {
    rules.iter().find_map(|(name, min)| {
        let chars = chars(name)?;
        (u64::try_from(chars).unwrap_or(u64::MAX) < *min).then(|| {
            let prefix = payload.map(|p| format!("{p}.")).unwrap_or_default();
            if *min == 1 {
                format!("{prefix}{name}: required")
            } else {
                format!("{prefix}{name}: at least {min} characters required")
            }
        })
    })
}

/// The rules on `app_id` (the key's app) and `timestamp_ms` (positive), in that order.
fn app_and_time_violation(
    app_id: Option<&str>,
    timestamp_ms: i64,
    context: &IngestContext<'_>,
) -> Option<&'static str> {
    if app_id != Some(context.app_id) {
        Some("app_id: not the app of the API key")
    } else if timestamp_ms <= 0 {
        Some("timestamp_ms: must be a positive time in ms since the Unix epoch")
    } else {
        None
    }
}

/// A canonical event (see [`canonical`]), its defaults already dropped: the same rules in the
/// same order as the general path, on the JSON, and the JSON as the record.
fn canonical_event(
    schema: &Schema,
    mut object: Map<String, Value>,
    path: &str,
    context: &IngestContext<'_>,
) -> Result<EventOutcome, Violation> {
    let payload = object.keys().find_map(|key| {
        schema
            .envelope
            .get_field_by_name(key)
            .filter(|field| field.containing_oneof().as_ref() == Some(&schema.payload))
    });
    let Some(payload) = payload else {
        return Ok(EventOutcome::Rejected(NO_PAYLOAD.into()));
    };
    if let Some(error) = min_len_violation_json(schema, &schema.envelope, &object, None) {
        return Ok(EventOutcome::Rejected(error));
    }
    if let (Kind::Message(body_desc), Some(Value::Object(body))) =
        (payload.kind(), object.get(payload.name()))
        && let Some(error) = min_len_violation_json(schema, &body_desc, body, Some(payload.name()))
    {
        return Ok(EventOutcome::Rejected(error));
    }
    let timestamp_ms = object
        .get("timestamp_ms")
        .and_then(Value::as_i64)
        .unwrap_or_default();
    let app_id = object.get("app_id").and_then(Value::as_str);
    if let Some(error) = app_and_time_violation(app_id, timestamp_ms, context) {
        return Ok(EventOutcome::Rejected(error.into()));
    }
    let id = fill_json_string(&mut object, "id", || {
        fresh_id::event_id(context.received_ms)
    });
    let idempotency_key =
        fill_json_string(&mut object, "idempotency_key", fresh_id::idempotency_key);
    object.insert("event_type".into(), payload.name().into());
    object.insert("received_ms".into(), context.received_ms.into());
    let record = serde_json::to_vec(&object).map_err(|e| Violation::new(path, e.to_string()))?;
    Ok(EventOutcome::Valid(AcceptedEvent {
        id,
        idempotency_key,
        record: record.into(),
    }))
}

/// [`fill_string`] of a canonical event's JSON object.
fn fill_json_string(
    object: &mut Map<String, Value>,
    name: &str,
    fresh: impl FnOnce() -> String,
) -> String {
    if let Some(current) = object.get(name).and_then(Value::as_str)
        && !current.is_empty()
    {
        return current.to_owned();
    }
    let value = fresh();
    object.insert(name.to_owned(), Value::String(value.clone()));
    value
}

/// Refuses unknown fields, a field given under both its names, and two members of a oneof,
/// naming the path; recurses into message fields. Type errors are left to the protojson reader.
fn check_fields(desc: &MessageDescriptor, json: &Value, path: &str) -> Result<(), Violation> {
    let Value::Object(object) = json else {
        return Ok(());
    };
    // Each entry is a distinct field of `desc` (a repeat or an unknown name returns), so these
    // stay as short as the message's field list: a scan beats hashing, and nothing is
    // allocated per key unless it is wrong or a message to recurse into.
    let mut named: Vec<(u32, &str)> = Vec::new();
    let mut oneofs: Vec<(OneofDescriptor, &str)> = Vec::new();
    let at = |key: &str| format!("{path}.{key}");
    for (key, value) in object {
        let field = desc
            .get_field_by_name(key)
            .or_else(|| desc.get_field_by_json_name(key))
            .ok_or_else(|| Violation::new(at(key), "unknown field"))?;
        if let Some((_, other)) = named.iter().find(|(n, _)| *n == field.number()) {
            return Err(Violation::new(
                at(key),
                format!("duplicate field: {other} names the same field"),
            ));
        }
        named.push((field.number(), key));
        if value.is_null() {
            continue;
        }
        if let Some(oneof) = field.containing_oneof() {
            if let Some((_, other)) = oneofs.iter().find(|(o, _)| *o == oneof) {
                return Err(Violation::new(
                    at(key),
                    format!(
                        "{other} is set too; only one member of {} may be",
                        oneof.name()
                    ),
                ));
            }
            oneofs.push((oneof, key));
        }
        let Kind::Message(inner) = field.kind() else {
            continue;
        };
        if field.is_map() {
            continue; // the maps of this schema have scalar values
        }
        if field.is_list() {
            if let Value::Array(items) = value {
                let at = at(key);
                for (index, item) in items.iter().enumerate() {
                    check_fields(&inner, item, &format!("{at}[{index}]"))?;
                }
            }
        } else {
            check_fields(&inner, value, &at(key))?;
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const CONTEXT: IngestContext<'static> = IngestContext {
        app_id: "app",
        received_ms: 1_770_000_000_000,
    };

    /// The outcome of `parse` (which takes the canonical path for `event`, which must be
    /// canonical) and of the general path alone: `parse` itself, so a divergence in its
    /// dispatch (say, defaults not dropped) shows here too.
    fn both(schema: &Schema, event: Value) -> (EventOutcome, EventOutcome) {
        let Value::Object(object) = &event else {
            panic!("an object");
        };
        assert!(
            canonical::is_canonical(schema, object),
            "canonical: {event}"
        );
        let fast = parse(schema, event.clone(), "e", &CONTEXT).expect("fast");
        let general = general(schema, event, "e", &CONTEXT).expect("general");
        (fast, general)
    }

    /// Canonical events, valid and rejected, that both readings must answer alike.
    pub(crate) const CANONICAL_EVENTS: [&str; 9] = [
        r#"{"id":"i1","idempotency_key":"k1","app_id":"app","device_id":"d","timestamp_ms":5,"custom_event":{"event_name":"bench","string_params":{"p":"x","a":"\u00e9\n","b":""},"int_params":{"n":0,"m":-3},"bool_params":{"t":true,"f":false}}}"#,
        r#"{"id":"i2","idempotency_key":"k2","app_id":"app","device_id":"d","timestamp_ms":9007199254740993,"correlation_id":"","device_context":{"platform":"PLATFORM_IOS","os_version":"17","app_version":"","network_type":"NETWORK_TYPE_UNSPECIFIED","screen_width":0,"screen_height":2147483647,"is_emulator":false,"is_jailbroken":true},"screen_view":{"screen_name":"home","previous_screen":null}}"#,
        r#"{"id":"i3","idempotency_key":"k3","app_id":"app","device_id":"d","timestamp_ms":1,"purchase_complete":{"order_id":"o","total_cents":0,"items":[{"product_id":"p","quantity":2,"price_cents":100},{}],"currency":"EUR"}}"#,
        r#"{"id":"i4","idempotency_key":"k4","app_id":"app","device_id":"d","timestamp_ms":1,"button_tap":{}}"#,
        // Rejections take the same words on both paths.
        r#"{"id":"i5","idempotency_key":"k5","app_id":"app","device_id":"","timestamp_ms":1,"button_tap":{}}"#,
        r#"{"id":"i6","idempotency_key":"k6","app_id":"other","device_id":"d","timestamp_ms":1,"button_tap":{"button_id":"b"}}"#,
        r#"{"id":"i7","idempotency_key":"k7","app_id":"app","device_id":"d","timestamp_ms":-1,"button_tap":{"button_id":"b"}}"#,
        r#"{"id":"i8","idempotency_key":"k8","app_id":"app","device_id":"d","timestamp_ms":1}"#,
        r#"{"id":"i9","idempotency_key":"k9","app_id":"app","device_id":"d","timestamp_ms":1,"custom_event":{"event_name":""}}"#,
    ];

    /// `event`'s record without its `id` and `idempotency_key` (fresh ones differ), after
    /// checking that the record holds the event's own.
    pub(crate) fn without_fresh(event: &AcceptedEvent) -> Value {
        let mut record: Value = serde_json::from_slice(&event.record).expect("json");
        assert_eq!(record["id"], event.id.as_str());
        assert_eq!(record["idempotency_key"], event.idempotency_key.as_str());
        let object = record.as_object_mut().expect("object");
        object.remove("id");
        object.remove("idempotency_key");
        record
    }

    #[test]
    fn canonical_events_store_the_bytes_of_the_general_path() {
        let schema = Schema::load().expect("schema");
        for text in CANONICAL_EVENTS {
            let event: Value = serde_json::from_str(text).expect("json");
            let (fast, general) = both(&schema, event);
            if let (EventOutcome::Valid(f), EventOutcome::Valid(g)) = (&fast, &general) {
                assert_eq!(
                    String::from_utf8_lossy(&f.record),
                    String::from_utf8_lossy(&g.record),
                    "{text}"
                );
            }
            assert_eq!(fast, general, "{text}");
        }
    }

    #[test]
    fn fresh_ids_and_keys_fill_both_paths_alike() {
        let schema = Schema::load().expect("schema");
        let event = serde_json::json!({
            "id": "", "app_id": "app", "device_id": "d", "timestamp_ms": 3,
            "button_tap": {"button_id": "b"}
        });
        let (EventOutcome::Valid(fast), EventOutcome::Valid(general)) = both(&schema, event) else {
            panic!("both valid");
        };
        assert_eq!(without_fresh(&fast), without_fresh(&general));
    }

    #[test]
    fn what_is_not_canonical_takes_the_general_path() {
        let schema = Schema::load().expect("schema");
        for text in [
            r#"{"appId":"app"}"#,
            r#"{"timestamp_ms":"5"}"#,
            r#"{"timestamp_ms":5.0}"#,
            r#"{"device_context":{"platform":1}}"#,
            r#"{"device_id":7}"#,
            r#"{"custom_event":{"string_params":{"p":1}}}"#,
            r#"{"custom_event":[]}"#,
            r#"{"custom_event":{"float_params":{"x":1.5}}}"#,
            r#"{"device_context":{"screen_width":2147483648}}"#,
        ] {
            let Value::Object(object) = serde_json::from_str(text).expect("json") else {
                panic!("object");
            };
            assert!(!canonical::is_canonical(&schema, &object), "{text}");
        }
    }
}
