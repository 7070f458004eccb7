//! The upstream `EventEnvelope` under protojson rules, validated and normalised.
//!
//! `prost-reflect` reads the values as protojson does (proto or JSON names, int64 as number or
//! string, enums by name or number); before it, a walk over the JSON refuses what it would let
//! pass or report without a path: unknown fields, one field named twice (`app_id` and
//! `appId`), two members of the payload oneof.

use std::collections::HashMap;

use prost_reflect::{
    DeserializeOptions, DynamicMessage, Kind, MessageDescriptor, ReflectMessage, SerializeOptions,
    Value as ProtoValue,
};
use serde_json::Value;

use super::event::{AcceptedEvent, EventOutcome, IngestContext};
use super::reply::Violation;
use super::schema::Schema;

pub(crate) fn parse(
    schema: &Schema,
    json: Value,
    path: &str,
    context: &IngestContext<'_>,
) -> Result<EventOutcome, Violation> {
    check_fields(&schema.envelope, &json, path)?;
    let mut event = DynamicMessage::deserialize_with_options(
        schema.envelope.clone(),
        &json,
        &DeserializeOptions::new().deny_unknown_fields(true),
    )
    .map_err(|e| Violation::new(path, e.to_string()))?;

    let Some(payload) = schema.payload.fields().find(|f| event.has_field(f)) else {
        return Ok(EventOutcome::Rejected(
            "payload: one event payload (screen_view, button_tap, custom_event, ...) is required"
                .into(),
        ));
    };
    if let Some(error) = min_len_violation(schema, &event, "") {
        return Ok(EventOutcome::Rejected(error));
    }
    if let Some(body) = event.get_field(&payload).as_message()
        && let Some(error) = min_len_violation(schema, body, &format!("{}.", payload.name()))
    {
        return Ok(EventOutcome::Rejected(error));
    }
    let app_id = event.get_field_by_name("app_id");
    if app_id.as_deref().and_then(ProtoValue::as_str) != Some(context.app_id) {
        return Ok(EventOutcome::Rejected(
            "app_id: not the app of the API key".into(),
        ));
    }
    let timestamp_ms = event
        .get_field_by_name("timestamp_ms")
        .and_then(|v| v.as_i64())
        .unwrap_or_default();
    if timestamp_ms <= 0 {
        return Ok(EventOutcome::Rejected(
            "timestamp_ms: must be a positive time in ms since the Unix epoch".into(),
        ));
    }

    let id = fill_string(&mut event, "id", || uuid::Uuid::now_v7().to_string());
    let idempotency_key = fill_string(&mut event, "idempotency_key", || {
        uuid::Uuid::new_v4().to_string()
    });
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false)
        .use_enum_numbers(false);
    let mut record = event
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| Violation::new(path, e.to_string()))?;
    if let Value::Object(object) = &mut record {
        object.insert("event_type".into(), payload.name().into());
        object.insert("received_ms".into(), context.received_ms.into());
    }
    Ok(EventOutcome::Valid(AcceptedEvent {
        id,
        idempotency_key,
        record: serde_json::to_vec(&record).map_err(|e| Violation::new(path, e.to_string()))?,
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

/// The first `(buf.validate.field).string.min_len` rule `message` breaks, as an error.
fn min_len_violation(schema: &Schema, message: &DynamicMessage, prefix: &str) -> Option<String> {
    schema
        .min_len(&message.descriptor())
        .iter()
        .find_map(|(name, min)| {
            let value = message.get_field_by_name(name)?;
            let chars = value.as_str().map_or(0, |s| s.chars().count());
            (u64::try_from(chars).unwrap_or(u64::MAX) < *min).then(|| {
                if *min == 1 {
                    format!("{prefix}{name}: required")
                } else {
                    format!("{prefix}{name}: at least {min} characters required")
                }
            })
        })
}

/// Refuses unknown fields, a field given under both its names, and two members of a oneof,
/// naming the path; recurses into message fields. Type errors are left to the protojson reader.
fn check_fields(desc: &MessageDescriptor, json: &Value, path: &str) -> Result<(), Violation> {
    let Value::Object(object) = json else {
        return Ok(());
    };
    let mut named: HashMap<u32, &str> = HashMap::new();
    let mut oneofs: HashMap<String, &str> = HashMap::new();
    for (key, value) in object {
        let at = format!("{path}.{key}");
        let field = desc
            .get_field_by_name(key)
            .or_else(|| desc.get_field_by_json_name(key))
            .ok_or_else(|| Violation::new(&at, "unknown field"))?;
        if let Some(other) = named.insert(field.number(), key) {
            return Err(Violation::new(
                &at,
                format!("duplicate field: {other} names the same field"),
            ));
        }
        if value.is_null() {
            continue;
        }
        if let Some(oneof) = field.containing_oneof()
            && let Some(other) = oneofs.insert(oneof.name().to_owned(), key)
        {
            return Err(Violation::new(
                &at,
                format!(
                    "{other} is set too; only one member of {} may be",
                    oneof.name()
                ),
            ));
        }
        let Kind::Message(inner) = field.kind() else {
            continue;
        };
        if field.is_map() {
            continue; // the maps of this schema have scalar values
        }
        if field.is_list() {
            if let Value::Array(items) = value {
                for (index, item) in items.iter().enumerate() {
                    check_fields(&inner, item, &format!("{at}[{index}]"))?;
                }
            }
        } else {
            check_fields(&inner, value, &at)?;
        }
    }
    Ok(())
}
