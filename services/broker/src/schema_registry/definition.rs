//! A definition parsed for its type: checked when registered, reduced to a canonical form whose
//! SHA-256 is the fingerprint, and compiled to validate payloads (spec §4).

use apache_avro::Schema as AvroSchema;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::avro_bounds::check_payload_bounds;
use super::error::RegistryError;
use super::types::SchemaType;

/// Largest definition accepted, in bytes: it is stored in one record of `broker/schemas`.
pub const MAX_DEFINITION_BYTES: usize = 1 << 20;

/// A definition, parsed.
#[derive(Debug)]
pub enum Definition {
    /// `bytes`, `string`, `number` and `protobuf`: kept as bytes, never interpreted.
    Opaque,
    /// A compiled JSON Schema and its document.
    Json {
        /// The document.
        document: Value,
        /// It, compiled.
        validator: Box<jsonschema::Validator>,
    },
    /// A parsed Avro schema.
    Avro(Box<AvroSchema>),
}

/// A parsed definition and its fingerprint.
#[derive(Debug)]
pub struct ParsedDefinition {
    /// The type it was parsed as.
    pub schema_type: SchemaType,
    /// The parsed form.
    pub definition: Definition,
    /// SHA-256 hex of the canonical form: sorted-key compact JSON for JSON Schema, Parsing
    /// Canonical Form for Avro, the bytes themselves for the other types.
    pub fingerprint: String,
}

impl ParsedDefinition {
    /// Parses `bytes` as a definition of `schema_type`.
    ///
    /// Errors: [`RegistryError::InvalidArgument`] on field `schema_definition` when it is too
    /// large, not JSON, does not compile (JSON Schema; remote `$ref`s are not fetched) or
    /// does not parse (Avro).
    pub fn parse(schema_type: SchemaType, bytes: &[u8]) -> Result<ParsedDefinition, RegistryError> {
        let invalid = |reason: String| {
            RegistryError::invalid("schema_definition", &String::from_utf8_lossy(bytes), reason)
        };
        if bytes.len() > MAX_DEFINITION_BYTES {
            return Err(invalid(format!(
                "{} bytes; at most {MAX_DEFINITION_BYTES}",
                bytes.len()
            )));
        }
        let (definition, canonical) = match schema_type {
            SchemaType::Bytes | SchemaType::String | SchemaType::Number | SchemaType::Protobuf => {
                (Definition::Opaque, bytes.to_vec())
            }
            SchemaType::JsonSchema => {
                let document: Value = serde_json::from_slice(bytes)
                    .map_err(|error| invalid(format!("not JSON: {error}")))?;
                let validator = jsonschema::validator_for(&document)
                    .map_err(|error| invalid(format!("not a valid JSON Schema: {error}")))?;
                let mut canonical = Vec::with_capacity(bytes.len());
                write_sorted(&document, &mut canonical);
                (
                    Definition::Json {
                        document,
                        validator: Box::new(validator),
                    },
                    canonical,
                )
            }
            SchemaType::Avro => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|error| invalid(format!("not UTF-8: {error}")))?;
                let schema = AvroSchema::parse_str(text)
                    .map_err(|error| invalid(format!("not a valid Avro schema: {error}")))?;
                let canonical = schema.canonical_form().into_bytes();
                (Definition::Avro(Box::new(schema)), canonical)
            }
        };
        Ok(ParsedDefinition {
            schema_type,
            definition,
            fingerprint: sha256_hex(&canonical),
        })
    }

    /// Checks a payload against the definition: JSON Schema payloads must be JSON the schema
    /// accepts, Avro payloads one datum that decodes with the schema and nothing after it.
    /// Other types accept anything.
    ///
    /// Errors: why the payload does not match, as text.
    pub fn validate_payload(&self, payload: &[u8]) -> Result<(), String> {
        match &self.definition {
            Definition::Opaque => Ok(()),
            Definition::Json { validator, .. } => {
                let instance: Value = serde_json::from_slice(payload)
                    .map_err(|error| format!("payload is not JSON: {error}"))?;
                let errors: Vec<String> = validator
                    .iter_errors(&instance)
                    .take(5)
                    .map(|error| error.to_string())
                    .collect();
                if errors.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "payload does not match the schema: {}",
                        errors.join("; ")
                    ))
                }
            }
            Definition::Avro(schema) => {
                // Proven first: apache-avro would reserve whatever a block count claims.
                check_payload_bounds(schema, payload).map_err(|error| {
                    format!("payload is not an Avro datum of the schema: {error}")
                })?;
                let mut rest = payload;
                let value =
                    apache_avro::from_avro_datum(schema, &mut rest, None).map_err(|error| {
                        format!("payload is not an Avro datum of the schema: {error}")
                    })?;
                // apache-avro decodes a string cut short as null instead of failing: a datum
                // that does not validate against its own schema was cut short.
                if !value.validate(schema) {
                    return Err("payload is not a whole Avro datum of the schema".to_owned());
                }
                if rest.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "payload has {} bytes after its Avro datum",
                        rest.len()
                    ))
                }
            }
        }
    }
}

/// Lower-case hex of the SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// Compact JSON with every object's keys in bytewise order, whatever order serde_json keeps
/// maps in (its `preserve_order` feature may be on through another crate).
fn write_sorted(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(key.clone()), out);
                out.push(b':');
                if let Some(inner) = map.get(key) {
                    write_sorted(inner, out);
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_sorted(item, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(value: &Value, out: &mut Vec<u8>) {
    // A scalar JSON value always serialises.
    out.extend_from_slice(&serde_json::to_vec(value).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_fingerprints_ignore_key_order_and_whitespace() {
        let a = ParsedDefinition::parse(
            SchemaType::JsonSchema,
            br#"{"type":"object","properties":{"b":{"type":"string"},"a":{"type":"integer"}}}"#,
        )
        .expect("valid");
        let b = ParsedDefinition::parse(
            SchemaType::JsonSchema,
            b"{ \"properties\": {\"a\": {\"type\": \"integer\"}, \"b\": {\"type\": \"string\"}},\n \"type\": \"object\" }",
        )
        .expect("valid");
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.fingerprint.len(), 64);
        let c = ParsedDefinition::parse(SchemaType::JsonSchema, br#"{"type":"string"}"#)
            .expect("valid");
        assert_ne!(a.fingerprint, c.fingerprint);
    }

    #[test]
    fn avro_fingerprints_use_the_parsing_canonical_form() {
        let a = ParsedDefinition::parse(
            SchemaType::Avro,
            br#"{"type":"record","name":"R","doc":"x","fields":[{"name":"a","type":"long"}]}"#,
        )
        .expect("valid");
        let b = ParsedDefinition::parse(
            SchemaType::Avro,
            br#"{"fields":[{"type":"long","name":"a"}],"name":"R","type":"record"}"#,
        )
        .expect("valid");
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn bad_definitions_are_invalid_arguments() {
        for (schema_type, bytes) in [
            (SchemaType::JsonSchema, &b"{not json"[..]),
            (SchemaType::JsonSchema, br#"{"type":"nonsense"}"#),
            (SchemaType::JsonSchema, br#"{"minimum":"ten"}"#),
            (SchemaType::Avro, br#"{"type":"record"}"#),
            (SchemaType::Avro, b"\xff\xfe"),
        ] {
            match ParsedDefinition::parse(schema_type, bytes) {
                Err(RegistryError::InvalidArgument { field, .. }) => {
                    assert_eq!(field, "schema_definition")
                }
                other => panic!("{schema_type} {bytes:?}: {other:?}"),
            }
        }
        let huge = vec![b' '; MAX_DEFINITION_BYTES + 1];
        assert!(ParsedDefinition::parse(SchemaType::Bytes, &huge).is_err());
    }

    #[test]
    fn payloads_are_validated_for_json_and_avro() {
        let json = ParsedDefinition::parse(
            SchemaType::JsonSchema,
            br#"{"type":"object","required":["id"],"properties":{"id":{"type":"integer"}}}"#,
        )
        .expect("valid");
        assert!(json.validate_payload(br#"{"id":1}"#).is_ok());
        assert!(json.validate_payload(br#"{"id":"x"}"#).is_err());
        assert!(json.validate_payload(b"{}").is_err());
        assert!(json.validate_payload(b"\xff").is_err());
        let avro = ParsedDefinition::parse(
            SchemaType::Avro,
            br#"{"type":"record","name":"R","fields":[{"name":"a","type":"long"},{"name":"s","type":"string"}]}"#,
        )
        .expect("valid");
        // zig-zag 1 = 0x02; string of length 2 = 0x04 "hi".
        assert!(avro.validate_payload(&[0x02, 0x04, b'h', b'i']).is_ok());
        assert!(
            avro.validate_payload(&[0x02, 0x04, b'h']).is_err(),
            "truncated"
        );
        assert!(
            avro.validate_payload(&[0x02, 0x04, b'h', b'i', 0]).is_err(),
            "trailing"
        );
        let opaque = ParsedDefinition::parse(SchemaType::Bytes, b"").expect("valid");
        assert!(opaque.validate_payload(b"\xff anything").is_ok());
    }

    #[test]
    fn avro_block_counts_beyond_the_payload_are_refused_without_allocating() {
        let longs =
            ParsedDefinition::parse(SchemaType::Avro, br#"{"type":"array","items":"long"}"#)
                .expect("valid");
        // Two longs (1, 2), then the end of the array.
        assert!(longs.validate_payload(&[0x04, 0x02, 0x04, 0x00]).is_ok());
        // A block claiming about a billion longs: apache-avro alone reserves tens of GiB for
        // it and aborts the process.
        let claim = [0x80, 0x80, 0x80, 0xE8, 0x03, 0x02];
        let error = longs.validate_payload(&claim).expect_err("refused");
        assert!(error.contains("more than the payload"), "{error}");
        let nulls =
            ParsedDefinition::parse(SchemaType::Avro, br#"{"type":"array","items":"null"}"#)
                .expect("valid");
        // Zero-width items: many blocks of payload-sized counts would stand for billions.
        let mut blocks = Vec::new();
        for _ in 0..4 {
            blocks.extend_from_slice(&[0x10]);
        }
        blocks.push(0);
        assert!(nulls.validate_payload(&blocks).is_err());
        let deep = ParsedDefinition::parse(
            SchemaType::Avro,
            br#"{"type":"record","name":"N","fields":[{"name":"next","type":["null","N"]}]}"#,
        )
        .expect("valid");
        let mut nested = vec![0x02; 100_000];
        nested.push(0x00);
        assert!(deep.validate_payload(&nested).is_err(), "stack-deep datum");
        assert!(deep.validate_payload(&[0x02, 0x02, 0x00]).is_ok());
    }
}
