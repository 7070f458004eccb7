//! The stored record's JSON written straight from the `DynamicMessage`: the bytes
//! `serialize_with_options` (proto field names, 64-bit integers as numbers, enums by name,
//! default fields skipped) into a `serde_json::Value` and `serde_json::to_vec` would give, that
//! is every object's keys sorted (a `Value` map is ordered by key), without building the
//! `Value` tree: on the server's hot path that tree cost more than the rest of the event.
//!
//! Leaves are written by `serde_json` itself (strings, integers, and floats through
//! `Value::from`, so an `f32` prints as the `f64` the tree held). A message this writer does not
//! cover leaf by leaf (a well-known type, which protojson prints its own way, or one with a
//! `bytes` field, base64) is written through the tree, which is exact by construction.

use std::borrow::Cow;

use prost_reflect::{
    DynamicMessage, Kind, MapKey, ReflectMessage, SerializeOptions, Value as ProtoValue,
};
use serde::ser::Error as _;
use serde_json::Error;

/// A top-level member the server adds to the event's own fields.
pub(crate) enum Extra<'a> {
    /// A string member.
    Str(&'a str, &'a str),
    /// An integer member.
    Int(&'a str, i64),
}

impl Extra<'_> {
    fn name(&self) -> &str {
        match self {
            Extra::Str(name, _) | Extra::Int(name, _) => name,
        }
    }
}

/// The serialisation the stored record has always used (see the module docs).
pub(crate) fn record_options() -> SerializeOptions {
    SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false)
        .use_enum_numbers(false)
}

/// `message` with `extras` added at its top level (an extra replaces a field of its name), as
/// JSON with every object's keys sorted.
pub(crate) fn write_record(
    message: &DynamicMessage,
    extras: &[Extra<'_>],
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    if needs_tree(message) {
        let mut tree =
            message.serialize_with_options(serde_json::value::Serializer, &record_options())?;
        if let serde_json::Value::Object(object) = &mut tree {
            for extra in extras {
                let value = match extra {
                    Extra::Str(_, text) => serde_json::Value::from(*text),
                    Extra::Int(_, number) => serde_json::Value::from(*number),
                };
                object.insert(extra.name().to_owned(), value);
            }
        }
        return serde_json::to_writer(out, &tree);
    }
    let fields: Vec<_> = message
        .fields()
        .filter(|(field, _)| extras.iter().all(|e| e.name() != field.name()))
        .collect();
    let mut members: Vec<(&str, Member<'_>)> = fields
        .iter()
        .map(|(field, value)| (field.name(), Member::Field(value, field.kind())))
        .chain(
            extras
                .iter()
                .map(|extra| (extra.name(), Member::Extra(extra))),
        )
        .collect();
    members.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (name, member)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, name)?;
        out.push(b':');
        match member {
            Member::Field(value, kind) => write_value(value, kind, out)?,
            Member::Extra(Extra::Str(_, text)) => serde_json::to_writer(&mut *out, text)?,
            Member::Extra(Extra::Int(_, number)) => serde_json::to_writer(&mut *out, number)?,
        }
    }
    out.push(b'}');
    Ok(())
}

/// One top-level member of a record: a field of the message or an extra.
enum Member<'m> {
    Field(&'m ProtoValue, Kind),
    Extra(&'m Extra<'m>),
}

/// Whether `message` is written through the `Value` tree (see the module docs): a
/// well-known type, or a `bytes` value among its set fields (nested messages decide alone).
fn needs_tree(message: &DynamicMessage) -> bool {
    let is_bytes = |value: &ProtoValue| matches!(value, ProtoValue::Bytes(_));
    message
        .descriptor()
        .full_name()
        .starts_with("google.protobuf.")
        || message.fields().any(|(_, value)| match value {
            ProtoValue::List(items) => items.iter().any(is_bytes),
            ProtoValue::Map(entries) => entries.values().any(is_bytes),
            value => is_bytes(value),
        })
}

fn write_value(value: &ProtoValue, kind: &Kind, out: &mut Vec<u8>) -> Result<(), Error> {
    match value {
        ProtoValue::Bool(v) => serde_json::to_writer(out, v),
        ProtoValue::I32(v) => serde_json::to_writer(out, v),
        ProtoValue::I64(v) => serde_json::to_writer(out, v),
        ProtoValue::U32(v) => serde_json::to_writer(out, v),
        ProtoValue::U64(v) => serde_json::to_writer(out, v),
        ProtoValue::F32(v) => write_float(f64::from(*v), serde_json::Value::from(*v), out),
        ProtoValue::F64(v) => write_float(*v, serde_json::Value::from(*v), out),
        ProtoValue::String(v) => serde_json::to_writer(out, v),
        ProtoValue::EnumNumber(number) => match kind {
            Kind::Enum(enum_ty) if enum_ty.full_name() == "google.protobuf.NullValue" => {
                out.extend_from_slice(b"null");
                Ok(())
            }
            Kind::Enum(enum_ty) => match enum_ty.get_value(*number) {
                Some(enum_value) => serde_json::to_writer(out, enum_value.name()),
                None => serde_json::to_writer(out, number),
            },
            _ => Err(Error::custom("an enum value of a field that is no enum")),
        },
        ProtoValue::Message(message) => write_record(message, &[], out),
        ProtoValue::List(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, kind, out)?;
            }
            out.push(b']');
            Ok(())
        }
        ProtoValue::Map(entries) => {
            let Kind::Message(entry) = kind else {
                return Err(Error::custom("a map value of a field that is no map"));
            };
            let value_kind = entry.map_entry_value_field().kind();
            let mut sorted: Vec<(Cow<'_, str>, &ProtoValue)> = entries
                .iter()
                .map(|(key, value)| (map_key(key), value))
                .collect();
            sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            out.push(b'{');
            for (i, (key, value)) in sorted.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key.as_ref())?;
                out.push(b':');
                write_value(value, &value_kind, out)?;
            }
            out.push(b'}');
            Ok(())
        }
        // `needs_tree` sends every message with a bytes field through the tree.
        ProtoValue::Bytes(_) => Err(Error::custom("a bytes value outside the tree")),
    }
}

/// A map key as protojson prints it: the string itself, or the number or bool as text.
fn map_key(key: &MapKey) -> Cow<'_, str> {
    match key {
        MapKey::String(text) => Cow::Borrowed(text),
        MapKey::Bool(v) => Cow::Owned(v.to_string()),
        MapKey::I32(v) => Cow::Owned(v.to_string()),
        MapKey::I64(v) => Cow::Owned(v.to_string()),
        MapKey::U32(v) => Cow::Owned(v.to_string()),
        MapKey::U64(v) => Cow::Owned(v.to_string()),
    }
}

/// protojson's non-finite floats are strings; a finite one prints as the tree's number did.
fn write_float(v: f64, as_tree: serde_json::Value, out: &mut Vec<u8>) -> Result<(), Error> {
    let text = if v.is_finite() {
        return serde_json::to_writer(out, &as_tree);
    } else if v.is_nan() {
        "NaN"
    } else if v > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    };
    serde_json::to_writer(out, text)
}
