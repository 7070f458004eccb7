//! Binary protobuf bodies (`application/x-protobuf`, `application/octet-stream`): decoded with
//! the vendored descriptors and handed on as the equivalent protojson body, so that one parser
//! applies every rule and writes every answer, whichever encoding the client chose.
//!
//! Unknown fields are refused, as in JSON: a field this server does not know would otherwise
//! be dropped silently from the stored event.

use prost_reflect::{
    DynamicMessage, MessageDescriptor, ReflectMessage, SerializeOptions, Value as ProtoValue,
};
use serde_json::Value;

use super::reply::{RequestError, Violation};
use super::schema::{Schema, SchemaError};

/// Reads `IngestEventBatchRequest` and `IngestEventRequest` messages.
#[derive(Debug, Clone)]
pub(crate) struct ProtobufBodies {
    batch: MessageDescriptor,
    single: MessageDescriptor,
}

impl ProtobufBodies {
    pub(crate) fn load() -> Result<Self, SchemaError> {
        let schema = Schema::load()?;
        let pool = schema.envelope.parent_pool();
        let message = |name: &str| {
            pool.get_message_by_name(name)
                .ok_or_else(|| SchemaError(format!("no {name}")))
        };
        Ok(Self {
            batch: message("causality.v1.IngestEventBatchRequest")?,
            single: message("causality.v1.IngestEventRequest")?,
        })
    }

    /// `{"events":[...]}` of an encoded `IngestEventBatchRequest`.
    pub(crate) fn batch_json(&self, bytes: &[u8]) -> Result<Vec<u8>, RequestError> {
        self.to_json(&self.batch, bytes)
    }

    /// `{"event":{...}}` of an encoded `IngestEventRequest`.
    pub(crate) fn single_json(&self, bytes: &[u8]) -> Result<Vec<u8>, RequestError> {
        self.to_json(&self.single, bytes)
    }

    fn to_json(&self, desc: &MessageDescriptor, bytes: &[u8]) -> Result<Vec<u8>, RequestError> {
        let message = DynamicMessage::decode(desc.clone(), bytes)
            .map_err(|e| bad("body", format!("not a valid {} message: {e}", desc.name())))?;
        refuse_unknown_fields(&message, "")?;
        // Field names as in proto, so the parser reports the same paths for both encodings;
        // an empty `events` list is left out here and reported by the parser as missing.
        let options = SerializeOptions::new().use_proto_field_name(true);
        let json: Value = message
            .serialize_with_options(serde_json::value::Serializer, &options)
            .map_err(|e| bad("body", e.to_string()))?;
        serde_json::to_vec(&json).map_err(|e| bad("body", e.to_string()))
    }
}

fn bad(field: &str, description: impl Into<String>) -> RequestError {
    RequestError::BadRequest(vec![Violation::new(field, description)])
}

/// The first unknown field anywhere in `message`, as a 400 naming its path and number.
fn refuse_unknown_fields(message: &DynamicMessage, path: &str) -> Result<(), RequestError> {
    if let Some(unknown) = message.unknown_fields().next() {
        let at = if path.is_empty() { "body" } else { path };
        return Err(bad(
            at,
            format!(
                "unknown field number {} in {}",
                unknown.number(),
                message.descriptor().name()
            ),
        ));
    }
    for (field, value) in message.fields() {
        let at = if path.is_empty() {
            field.name().to_owned()
        } else {
            format!("{path}.{}", field.name())
        };
        match value {
            ProtoValue::Message(inner) => refuse_unknown_fields(inner, &at)?,
            ProtoValue::List(items) => {
                for (index, item) in items.iter().enumerate() {
                    if let ProtoValue::Message(inner) = item {
                        refuse_unknown_fields(inner, &format!("{at}[{index}]"))?;
                    }
                }
            }
            ProtoValue::Map(entries) => {
                for (key, item) in entries {
                    if let ProtoValue::Message(inner) = item {
                        refuse_unknown_fields(inner, &format!("{at}[{key:?}]"))?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}
