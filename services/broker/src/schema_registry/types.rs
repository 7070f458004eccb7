//! The registry's vocabulary as it travels on the wire: schema types, compatibility modes and
//! topic validation policies, parsed case-insensitively (spec §4).

use serde::{Deserialize, Serialize};

use super::error::RegistryError;

/// What a schema describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaType {
    /// Opaque bytes: no definition needed.
    Bytes,
    /// UTF-8 text.
    String,
    /// A number.
    Number,
    /// An Apache Avro schema (JSON).
    Avro,
    /// A JSON Schema document.
    JsonSchema,
    /// A Protocol Buffers definition: stored and fingerprinted, never checked.
    Protobuf,
}

impl SchemaType {
    /// Parses a wire name: `bytes`, `string`, `number`, `avro`, `json_schema` (or
    /// `jsonschema`), `protobuf` (or `proto`), any case.
    ///
    /// Errors: [`RegistryError::InvalidArgument`] naming the field `schema_type`.
    pub fn parse(name: &str) -> Result<SchemaType, RegistryError> {
        match name.to_ascii_lowercase().as_str() {
            "bytes" => Ok(SchemaType::Bytes),
            "string" => Ok(SchemaType::String),
            "number" => Ok(SchemaType::Number),
            "avro" => Ok(SchemaType::Avro),
            "json_schema" | "jsonschema" => Ok(SchemaType::JsonSchema),
            "protobuf" | "proto" => Ok(SchemaType::Protobuf),
            _ => Err(RegistryError::invalid(
                "schema_type",
                name,
                "one of bytes, string, number, avro, json_schema, protobuf",
            )),
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaType::Bytes => "bytes",
            SchemaType::String => "string",
            SchemaType::Number => "number",
            SchemaType::Avro => "avro",
            SchemaType::JsonSchema => "json_schema",
            SchemaType::Protobuf => "protobuf",
        }
    }
}

impl std::fmt::Display for SchemaType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which earlier data a new version must stay compatible with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompatibilityMode {
    /// No check.
    None,
    /// The new version reads data written with the latest one (the default).
    #[default]
    Backward,
    /// The latest version reads data written with the new one.
    Forward,
    /// Both.
    Full,
}

impl CompatibilityMode {
    /// Parses `none`, `backward`, `forward`, `full`, any case.
    ///
    /// Errors: [`RegistryError::InvalidArgument`] naming the field `compatibility_mode`.
    pub fn parse(name: &str) -> Result<CompatibilityMode, RegistryError> {
        match name.to_ascii_lowercase().as_str() {
            "none" => Ok(CompatibilityMode::None),
            "backward" => Ok(CompatibilityMode::Backward),
            "forward" => Ok(CompatibilityMode::Forward),
            "full" => Ok(CompatibilityMode::Full),
            _ => Err(RegistryError::invalid(
                "compatibility_mode",
                name,
                "one of none, backward, forward, full",
            )),
        }
    }

    /// The name as `GetSchema` and `ListSubjects` answer it (upper case, as upstream).
    pub fn as_str(self) -> &'static str {
        match self {
            CompatibilityMode::None => "NONE",
            CompatibilityMode::Backward => "BACKWARD",
            CompatibilityMode::Forward => "FORWARD",
            CompatibilityMode::Full => "FULL",
        }
    }
}

impl std::fmt::Display for CompatibilityMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a topic bound to a subject does with messages that do not match it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidationPolicy {
    /// Nothing is checked.
    None,
    /// Mismatches are logged and counted, and the message is kept (the default, as upstream).
    #[default]
    Warn,
    /// Mismatches are refused with `InvalidArgument`.
    Enforce,
}

impl ValidationPolicy {
    /// Parses `none`, `warn`, `enforce`, any case; empty = the default (`warn`).
    ///
    /// Errors: [`RegistryError::InvalidArgument`] naming the field `validation_policy`.
    pub fn parse(name: &str) -> Result<ValidationPolicy, RegistryError> {
        match name.to_ascii_lowercase().as_str() {
            "" => Ok(ValidationPolicy::default()),
            "none" => Ok(ValidationPolicy::None),
            "warn" => Ok(ValidationPolicy::Warn),
            "enforce" => Ok(ValidationPolicy::Enforce),
            _ => Err(RegistryError::invalid(
                "validation_policy",
                name,
                "one of none, warn, enforce",
            )),
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ValidationPolicy::None => "none",
            ValidationPolicy::Warn => "warn",
            ValidationPolicy::Enforce => "enforce",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_in_any_case_and_others_are_refused() {
        assert_eq!(
            SchemaType::parse("JSON_Schema").ok(),
            Some(SchemaType::JsonSchema)
        );
        assert_eq!(SchemaType::parse("proto").ok(), Some(SchemaType::Protobuf));
        assert_eq!(
            CompatibilityMode::parse("FuLL").ok(),
            Some(CompatibilityMode::Full)
        );
        assert_eq!(
            ValidationPolicy::parse("ENFORCE").ok(),
            Some(ValidationPolicy::Enforce)
        );
        assert_eq!(
            ValidationPolicy::parse("").ok(),
            Some(ValidationPolicy::Warn)
        );
        for bad in ["", "xml", "json"] {
            assert!(SchemaType::parse(bad).is_err(), "{bad}");
        }
        for bad in ["", "transitive", "back"] {
            assert!(CompatibilityMode::parse(bad).is_err(), "{bad}");
        }
        assert!(ValidationPolicy::parse("strict").is_err());
    }
}
