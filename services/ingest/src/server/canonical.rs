//! The envelope's JSON when it is already canonical protojson, turned into the stored fields
//! without the `DynamicMessage` round trip.
//!
//! A canonical event (what the SDKs send: proto field names, strings for strings, JSON integers
//! for integers, enum names, objects for messages, string-keyed maps) reads back from
//! `DynamicMessage` as itself minus its default values: `envelope` would store the same
//! fields. So for such an event the record is the parsed JSON with nulls and defaults dropped,
//! and the protojson reader (most of an event's cost) is skipped. Whatever else (JSON names,
//! int64 as strings, enum numbers, floats, bytes, well-known types, a value of the wrong type)
//! goes through `envelope`'s general path, which also words every type error. The tests in
//! `tests/server_parse.rs` and this module's own compare both paths' records byte for byte.

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value};

use super::schema::Schema;

/// Whether `object` (an event that passed `check_fields`) is canonical for the envelope of
/// `schema`: every key a proto field name the protojson reader resolves to that field, every
/// non-null value of the field's type in its canonical form.
pub(crate) fn is_canonical(schema: &Schema, object: &Map<String, Value>) -> bool {
    is_canonical_message(
        &schema.envelope,
        object,
        schema.json_name_shadows_proto_name,
    )
}

/// [`is_canonical`] of `object` for `desc`; `json_names_shadow` is
/// [`Schema::json_name_shadows_proto_name`].
fn is_canonical_message(
    desc: &MessageDescriptor,
    object: &Map<String, Value>,
    json_names_shadow: bool,
) -> bool {
    object.iter().all(|(key, value)| {
        let Some(field) = desc.get_field_by_name(key) else {
            return false;
        };
        // The protojson reader looks a key up by JSON name first: only worth asking when the
        // schema has a JSON name equal to another field's proto name (checked at load).
        if json_names_shadow
            && desc
                .get_field_by_json_name(key)
                .is_some_and(|by_json| by_json != field)
        {
            return false;
        }
        value.is_null() || field_value_is_canonical(&field, value, json_names_shadow)
    })
}

fn field_value_is_canonical(
    field: &FieldDescriptor,
    value: &Value,
    json_names_shadow: bool,
) -> bool {
    let kind = field.kind();
    if field.is_map() {
        let Kind::Message(entry) = kind else {
            return false;
        };
        let (key_kind, value_kind) = (
            entry.map_entry_key_field().kind(),
            entry.map_entry_value_field().kind(),
        );
        let Value::Object(entries) = value else {
            return false;
        };
        matches!(key_kind, Kind::String)
            && !matches!(value_kind, Kind::Message(_))
            && entries
                .values()
                .all(|v| scalar_is_canonical(&value_kind, v))
    } else if field.is_list() {
        let Value::Array(items) = value else {
            return false;
        };
        items
            .iter()
            .all(|item| item_is_canonical(&kind, item, json_names_shadow))
    } else {
        item_is_canonical(&kind, value, json_names_shadow)
    }
}

fn item_is_canonical(kind: &Kind, value: &Value, json_names_shadow: bool) -> bool {
    match (kind, value) {
        (Kind::Message(message), Value::Object(object)) => {
            !message.full_name().starts_with("google.protobuf.")
                && is_canonical_message(message, object, json_names_shadow)
        }
        (Kind::Message(_), _) => false,
        (kind, value) => scalar_is_canonical(kind, value),
    }
}

fn scalar_is_canonical(kind: &Kind, value: &Value) -> bool {
    match kind {
        Kind::String => value.is_string(),
        Kind::Bool => value.is_boolean(),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            value.as_i64().is_some_and(|n| i32::try_from(n).is_ok())
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => value.as_i64().is_some(),
        Kind::Uint32 | Kind::Fixed32 => value.as_u64().is_some_and(|n| u32::try_from(n).is_ok()),
        Kind::Uint64 | Kind::Fixed64 => value.as_u64().is_some(),
        // By its own name (not an alias, which prints as the first name of its number).
        Kind::Enum(enum_ty) => {
            enum_ty.full_name() != "google.protobuf.NullValue"
                && value.as_str().is_some_and(|name| {
                    enum_ty.get_value_by_name(name).is_some_and(|v| {
                        enum_ty
                            .get_value(v.number())
                            .is_some_and(|first| first.name() == name)
                    })
                })
        }
        // Floats print as the f32/f64 they are read into, bytes as re-encoded base64: left to
        // the general path.
        Kind::Float | Kind::Double | Kind::Bytes | Kind::Message(_) => false,
    }
}

/// Drops what protojson does not print from a canonical `object`: null members, and members
/// without presence holding their default (`""`, `0`, `false`, the enum's zero, `[]`, `{}` of
/// a map); recurses into messages.
pub(crate) fn drop_defaults(desc: &MessageDescriptor, object: &mut Map<String, Value>) {
    object.retain(|key, value| {
        let Some(field) = desc.get_field_by_name(key) else {
            return true;
        };
        if value.is_null() {
            return false;
        }
        match (field.kind(), &mut *value) {
            (Kind::Message(message), Value::Object(inner)) if !field.is_map() => {
                drop_defaults(&message, inner);
            }
            (Kind::Message(message), Value::Array(items)) => {
                for item in items.iter_mut() {
                    if let Value::Object(inner) = item {
                        drop_defaults(&message, inner);
                    }
                }
            }
            _ => {}
        }
        field.supports_presence() || !is_default(&field, value)
    });
}

fn is_default(field: &FieldDescriptor, value: &Value) -> bool {
    match value {
        Value::Array(items) => items.is_empty(),
        Value::Object(entries) => field.is_map() && entries.is_empty(),
        Value::String(text) => match field.kind() {
            Kind::Enum(enum_ty) => enum_ty
                .get_value_by_name(text)
                .is_some_and(|v| v.number() == 0),
            _ => text.is_empty(),
        },
        Value::Bool(flag) => !flag,
        Value::Number(number) => number.as_i64() == Some(0) || number.as_u64() == Some(0),
        Value::Null => true,
    }
}
