//! The registry's events as stored in `broker/schemas`: one JSON object per record. Every node
//! folds them in the same order, so ids and versions come out the same everywhere.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::types::{CompatibilityMode, SchemaType, ValidationPolicy};

/// The stream of registry events.
pub const SCHEMAS_STREAM: &str = "broker/schemas";

/// One registry event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RegistryEvent {
    /// A definition registered under a subject. Folding gives it the next version (and a new
    /// subject the next schema id), unless the subject already has a live version with the
    /// same fingerprint: then it changes nothing (a racing duplicate).
    SchemaRegistered {
        /// The subject.
        subject: String,
        /// The definition's type.
        schema_type: SchemaType,
        /// The definition exactly as registered, base64.
        definition: String,
        /// SHA-256 hex of its canonical form.
        fingerprint: String,
        /// Free text.
        description: String,
        /// Who registered it.
        created_by: String,
        /// Tags.
        tags: Vec<String>,
        /// Seconds since the Unix epoch.
        created_at: u64,
    },
    /// A subject's compatibility mode changed.
    ModeSet {
        /// The subject.
        subject: String,
        /// Its new mode.
        mode: CompatibilityMode,
    },
    /// A version was deleted (its number is never reused).
    VersionDeleted {
        /// The subject.
        subject: String,
        /// The version.
        version: u32,
    },
    /// A topic was bound to a subject (by its first producer, or by an admin), with its
    /// validation settings.
    TopicConfigured {
        /// The topic (`/ns/topic`).
        topic: String,
        /// The subject its messages follow.
        subject: String,
        /// What happens to messages that do not.
        policy: ValidationPolicy,
        /// Whether payloads are decoded and validated against the schema.
        payload_validation: bool,
    },
}

impl RegistryEvent {
    /// The record stored for the event.
    pub fn encode(&self) -> Bytes {
        // Strings, numbers and enums of unit variants: serialising cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads a stored record.
    ///
    /// Errors: why the record is not an event of this build.
    pub fn decode(record: &[u8]) -> Result<RegistryEvent, String> {
        serde_json::from_slice(record).map_err(|error| error.to_string())
    }

    /// Encodes a definition for [`RegistryEvent::SchemaRegistered`].
    pub fn encode_definition(definition: &[u8]) -> String {
        STANDARD.encode(definition)
    }

    /// Decodes a definition stored by [`RegistryEvent::encode_definition`].
    ///
    /// Errors: the base64 error, as text.
    pub fn decode_definition(stored: &str) -> Result<Bytes, String> {
        STANDARD
            .decode(stored)
            .map(Bytes::from)
            .map_err(|error| error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_garbage_is_refused() {
        let event = RegistryEvent::SchemaRegistered {
            subject: "orders".into(),
            schema_type: SchemaType::JsonSchema,
            definition: RegistryEvent::encode_definition(br#"{"type":"object"}"#),
            fingerprint: "ab".into(),
            description: String::new(),
            created_by: "me".into(),
            tags: vec!["t".into()],
            created_at: 7,
        };
        assert_eq!(RegistryEvent::decode(&event.encode()), Ok(event));
        let mode = RegistryEvent::ModeSet {
            subject: "s".into(),
            mode: CompatibilityMode::Full,
        };
        assert_eq!(
            std::str::from_utf8(&mode.encode()).expect("utf-8"),
            r#"{"event":"mode_set","subject":"s","mode":"full"}"#
        );
        assert!(RegistryEvent::decode(b"not json").is_err());
        assert!(
            RegistryEvent::decode(br#"{"event":"mode_set","subject":"s","mode":"x"}"#).is_err()
        );
        assert_eq!(
            RegistryEvent::decode_definition(&RegistryEvent::encode_definition(b"\x00\xff")),
            Ok(Bytes::from_static(b"\x00\xff"))
        );
    }
}
