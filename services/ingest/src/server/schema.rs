//! The upstream schema at run time: descriptors of the vendored protos, decoded from the
//! checked-in descriptor set, and the `buf.validate` `min_len` rules read from their options.
//!
//! Why a checked-in set rather than compiling the protos in `build.rs`: a build script would
//! put a proto compiler (`protox` and its parser) into every build of the server for a result
//! that changes only when a vendored proto does; the ~250 KiB set (mostly `buf/validate/validate.proto`'s rules) is decoded once at start and
//! `tests/server_descriptors.rs` fails if it drifts from the protos.

use std::collections::HashMap;

use prost_reflect::{DescriptorPool, ExtensionDescriptor, MessageDescriptor, OneofDescriptor};

/// `causality/v1/service.proto` and its imports, compiled by `protox`.
const DESCRIPTOR_SET: &[u8] = include_bytes!("../../proto/causality-v1.binpb");

/// The checked-in descriptor set could not be used (a build defect, not an input error).
#[derive(Debug, thiserror::Error)]
#[error("the ingest schema is unusable: {0}")]
pub struct SchemaError(pub(crate) String);

/// The envelope's descriptor, its payload oneof and the `min_len` rules per message.
#[derive(Debug, Clone)]
pub(crate) struct Schema {
    pub(crate) envelope: MessageDescriptor,
    pub(crate) payload: OneofDescriptor,
    /// Message full name → (field name, minimum length in characters).
    min_len: HashMap<String, Vec<(String, u64)>>,
    /// Whether some message has a field whose JSON name is another field's proto name (the
    /// protojson reader would resolve that key to the other field); checked once here so the
    /// canonical check needs no JSON-name lookup per key when none does.
    pub(crate) json_name_shadows_proto_name: bool,
}

impl Schema {
    pub(crate) fn load() -> Result<Self, SchemaError> {
        let pool =
            DescriptorPool::decode(DESCRIPTOR_SET).map_err(|e| SchemaError(e.to_string()))?;
        let envelope = pool
            .get_message_by_name("causality.v1.EventEnvelope")
            .ok_or_else(|| SchemaError("no causality.v1.EventEnvelope".into()))?;
        let payload = envelope
            .oneofs()
            .find(|o| o.name() == "payload")
            .ok_or_else(|| SchemaError("EventEnvelope has no payload oneof".into()))?;
        let rules = pool
            .get_extension_by_name("buf.validate.field")
            .ok_or_else(|| SchemaError("no buf.validate.field extension".into()))?;
        let min_len = pool
            .all_messages()
            .filter_map(|m| {
                let fields = min_len_fields(&m, &rules);
                (!fields.is_empty()).then(|| (m.full_name().to_owned(), fields))
            })
            .collect();
        let json_name_shadows_proto_name = pool.all_messages().any(|m| json_name_shadows(&m));
        Ok(Self {
            envelope,
            payload,
            min_len,
            json_name_shadows_proto_name,
        })
    }

    /// The `(buf.validate.field).string.min_len` rules of `message`.
    pub(crate) fn min_len(&self, message: &MessageDescriptor) -> &[(String, u64)] {
        self.min_len
            .get(message.full_name())
            .map_or(&[], Vec::as_slice)
    }
}

/// Whether a field of `message` has as JSON name the proto name of another of its fields.
pub(crate) fn json_name_shadows(message: &MessageDescriptor) -> bool {
    message.fields().any(|field| {
        message
            .get_field_by_name(field.json_name())
            .is_some_and(|other| other != field)
    })
}

fn min_len_fields(message: &MessageDescriptor, rules: &ExtensionDescriptor) -> Vec<(String, u64)> {
    message
        .fields()
        .filter_map(|field| {
            let options = field.options();
            if !options.has_extension(rules) {
                return None;
            }
            let rule = options.get_extension(rules);
            let string = rule.as_message()?.get_field_by_name("string")?;
            let min = string
                .as_message()?
                .get_field_by_name("min_len")?
                .as_u64()?;
            (min > 0).then(|| (field.name().to_owned(), min))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_len_rules_come_from_the_vendored_options() {
        let schema = Schema::load().expect("schema");
        let mut all: Vec<String> = schema
            .min_len
            .iter()
            .flat_map(|(m, fields)| fields.iter().map(move |(f, n)| format!("{m}.{f}>={n}")))
            .collect();
        all.sort();
        assert_eq!(
            all,
            [
                "causality.v1.AddToCart.product_id>=1",
                "causality.v1.ButtonTap.button_id>=1",
                "causality.v1.CustomEvent.event_name>=1",
                "causality.v1.EventEnvelope.app_id>=1",
                "causality.v1.EventEnvelope.device_id>=1",
                "causality.v1.ProductView.product_id>=1",
                "causality.v1.PurchaseComplete.order_id>=1",
                "causality.v1.RemoveFromCart.product_id>=1",
                "causality.v1.ScreenExit.screen_name>=1",
                "causality.v1.ScreenView.screen_name>=1",
                "causality.v1.TextInput.field_id>=1",
            ]
        );
        assert_eq!(schema.payload.fields().count(), 29);
    }

    /// A proto3 message `t.M` with string fields `(proto name, JSON name)`.
    fn message_with(fields: [(&str, &str); 2]) -> MessageDescriptor {
        use prost_reflect::prost_types::{
            DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet,
            field_descriptor_proto::{Label, Type},
        };
        let field = |(name, json): (&str, &str), number| FieldDescriptorProto {
            name: Some(name.into()),
            json_name: Some(json.into()),
            number: Some(number),
            label: Some(Label::Optional as i32),
            r#type: Some(Type::String as i32),
            ..Default::default()
        };
        let file = FileDescriptorProto {
            name: Some("shadow.proto".into()),
            package: Some("t".into()),
            syntax: Some("proto3".into()),
            message_type: vec![DescriptorProto {
                name: Some("M".into()),
                field: vec![field(fields[0], 1), field(fields[1], 2)],
                ..Default::default()
            }],
            ..Default::default()
        };
        let pool = DescriptorPool::from_file_descriptor_set(FileDescriptorSet { file: vec![file] })
            .expect("descriptor");
        pool.get_message_by_name("t.M").expect("message")
    }

    #[test]
    fn a_json_name_equal_to_another_fields_proto_name_is_found() {
        // `x`'s JSON name is `other`, the proto name of the second field.
        assert!(json_name_shadows(&message_with([
            ("x", "other"),
            ("other", "otherJson")
        ])));
        // A field's own JSON name equal to its proto name shadows nothing.
        assert!(!json_name_shadows(&message_with([
            ("x", "x"),
            ("a_b", "aB")
        ])));
        // The compiled-in schema has none, so the canonical check skips the lookup.
        assert!(!Schema::load().expect("schema").json_name_shadows_proto_name);
    }
}
