//! The Avro rule table: each row an evolution from `old` to `new` and whether it is compatible
//! in each mode (backward, forward, full; none always is).

use crate::schema_registry::compat::check;
use crate::schema_registry::definition::ParsedDefinition;
use crate::schema_registry::types::{CompatibilityMode, SchemaType};

fn record(fields: &str) -> String {
    format!(r#"{{"type":"record","name":"Order","namespace":"shop","fields":[{fields}]}}"#)
}

const ID: &str = r#"{"name":"id","type":"long"}"#;

#[test]
fn avro_rule_table_per_mode() {
    // (name, old, new, backward, forward)
    let rows: Vec<(&str, String, String, bool, bool)> = vec![
        ("identical", record(ID), record(ID), true, true),
        (
            "added field with default",
            record(ID),
            record(&format!(r#"{ID},{{"name":"note","type":"string","default":""}}"#)),
            true,
            true,
        ),
        (
            "added field without default",
            record(ID),
            record(&format!(r#"{ID},{{"name":"note","type":"string"}}"#)),
            false,
            true,
        ),
        (
            "removed field without default",
            record(&format!(r#"{ID},{{"name":"note","type":"string"}}"#)),
            record(ID),
            true,
            false,
        ),
        (
            "int promoted to long",
            record(r#"{"name":"n","type":"int"}"#),
            record(r#"{"name":"n","type":"long"}"#),
            true,
            false,
        ),
        (
            "long changed to string",
            record(r#"{"name":"n","type":"long"}"#),
            record(r#"{"name":"n","type":"string"}"#),
            false,
            false,
        ),
        (
            "enum symbol removed",
            record(r#"{"name":"s","type":{"type":"enum","name":"S","symbols":["A","B","C"]}}"#),
            record(r#"{"name":"s","type":{"type":"enum","name":"S","symbols":["A","B"]}}"#),
            false,
            true,
        ),
        (
            "field made nullable",
            record(r#"{"name":"n","type":"string"}"#),
            record(r#"{"name":"n","type":["null","string"],"default":null}"#),
            true,
            false,
        ),
        (
            "record renamed",
            record(ID),
            r#"{"type":"record","name":"Invoice","namespace":"shop","fields":[{"name":"id","type":"long"}]}"#.to_owned(),
            false,
            false,
        ),
    ];
    let mut failures = Vec::new();
    for (name, old, new, backward, forward) in rows {
        let old = ParsedDefinition::parse(SchemaType::Avro, old.as_bytes()).expect("valid avro");
        let new = ParsedDefinition::parse(SchemaType::Avro, new.as_bytes()).expect("valid avro");
        for (mode, expected) in [
            (CompatibilityMode::None, true),
            (CompatibilityMode::Backward, backward),
            (CompatibilityMode::Forward, forward),
            (CompatibilityMode::Full, backward && forward),
        ] {
            let reasons = check(mode, &old, &new).expect("avro is checkable");
            if reasons.is_empty() != expected {
                failures.push(format!(
                    "{name} in {mode}: expected compatible={expected}, reasons {reasons:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn type_changes_and_protobuf_modes() {
    let json =
        ParsedDefinition::parse(SchemaType::JsonSchema, br#"{"type":"object"}"#).expect("valid");
    let avro = ParsedDefinition::parse(SchemaType::Avro, br#""string""#).expect("valid");
    let reasons = check(CompatibilityMode::Backward, &json, &avro).expect("checkable");
    assert!(
        reasons[0].contains("schema type changes from json_schema to avro"),
        "{reasons:?}"
    );
    assert!(
        check(CompatibilityMode::None, &json, &avro)
            .expect("checkable")
            .is_empty()
    );
    let proto =
        ParsedDefinition::parse(SchemaType::Protobuf, b"syntax = \"proto3\";").expect("stored");
    assert!(check(CompatibilityMode::Backward, &proto, &proto).is_err());
    assert!(
        check(CompatibilityMode::None, &proto, &proto)
            .expect("none")
            .is_empty()
    );
}
