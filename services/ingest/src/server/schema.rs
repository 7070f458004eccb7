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
        Ok(Self {
            envelope,
            payload,
            min_len,
        })
    }

    /// The `(buf.validate.field).string.min_len` rules of `message`.
    pub(crate) fn min_len(&self, message: &MessageDescriptor) -> &[(String, u64)] {
        self.min_len
            .get(message.full_name())
            .map_or(&[], Vec::as_slice)
    }
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
}
