//! The JSON Schema rule table: each row an evolution from `old` to `new` and whether it is
//! compatible in each mode (backward, forward, full; none always is).

use serde_json::json;

use crate::schema_registry::compat::check;
use crate::schema_registry::definition::ParsedDefinition;
use crate::schema_registry::types::{CompatibilityMode, SchemaType};

struct Row {
    name: &'static str,
    old: serde_json::Value,
    new: serde_json::Value,
    backward: bool,
    forward: bool,
}

fn object(properties: serde_json::Value, required: &[&str], closed: bool) -> serde_json::Value {
    let mut schema = json!({"type": "object", "properties": properties, "required": required});
    if closed {
        schema["additionalProperties"] = json!(false);
    }
    schema
}

/// What schemars/pydantic generate for `Option<Struct>`: `{keyword: [{$ref A}, {type null}]}`.
fn optional_struct(keyword: &str, definition: serde_json::Value) -> serde_json::Value {
    json!({
        "$defs": {"A": definition},
        keyword: [{"$ref": "#/$defs/A"}, {"type": "null"}]
    })
}

/// What older schemars generate for a struct field: `{allOf: [{$ref A}]}`.
fn all_of_ref(definition: serde_json::Value) -> serde_json::Value {
    json!({"$defs": {"A": definition}, "allOf": [{"$ref": "#/$defs/A"}]})
}

fn rows() -> Vec<Row> {
    let id = json!({"type": "integer"});
    let name = json!({"type": "string"});
    vec![
        Row {
            name: "identical",
            old: object(json!({"id": id, "name": name}), &["id"], false),
            new: object(json!({"id": id, "name": name}), &["id"], false),
            backward: true,
            forward: true,
        },
        Row {
            name: "added optional property",
            old: object(json!({"id": id}), &["id"], false),
            new: object(json!({"id": id, "name": name}), &["id"], false),
            backward: true,
            forward: true,
        },
        Row {
            name: "added required property",
            old: object(json!({"id": id}), &["id"], false),
            new: object(json!({"id": id, "name": name}), &["id", "name"], false),
            backward: false,
            forward: true,
        },
        Row {
            name: "required property removed",
            old: object(json!({"id": id, "name": name}), &["id", "name"], false),
            new: object(json!({"id": id}), &["id"], false),
            backward: true,
            forward: false,
        },
        Row {
            name: "type narrowed number -> integer",
            old: object(json!({"n": {"type": "number"}}), &[], false),
            new: object(json!({"n": {"type": "integer"}}), &[], false),
            backward: false,
            forward: true,
        },
        Row {
            name: "type changed string -> integer",
            old: object(json!({"n": name}), &[], false),
            new: object(json!({"n": id}), &[], false),
            backward: false,
            forward: false,
        },
        Row {
            name: "type widened to [string, null]",
            old: object(json!({"n": name}), &[], false),
            new: object(json!({"n": {"type": ["string", "null"]}}), &[], false),
            backward: true,
            forward: false,
        },
        Row {
            name: "enum tightened",
            old: object(json!({"s": {"enum": ["a", "b", "c"]}}), &[], false),
            new: object(json!({"s": {"enum": ["a", "b"]}}), &[], false),
            backward: false,
            forward: true,
        },
        Row {
            name: "const replaced",
            old: object(json!({"v": {"const": 1}}), &[], false),
            new: object(json!({"v": {"const": 2}}), &[], false),
            backward: false,
            forward: false,
        },
        Row {
            name: "maximum tightened",
            old: object(
                json!({"n": {"type": "integer", "maximum": 100}}),
                &[],
                false,
            ),
            new: object(json!({"n": {"type": "integer", "maximum": 50}}), &[], false),
            backward: false,
            forward: true,
        },
        Row {
            name: "exclusiveMinimum added",
            old: object(json!({"n": {"type": "number", "minimum": 0}}), &[], false),
            new: object(
                json!({"n": {"type": "number", "exclusiveMinimum": 0}}),
                &[],
                false,
            ),
            backward: false,
            forward: true,
        },
        Row {
            name: "minLength added",
            old: object(json!({"s": name}), &[], false),
            new: object(json!({"s": {"type": "string", "minLength": 3}}), &[], false),
            backward: false,
            forward: true,
        },
        Row {
            name: "field dropped from a closed model",
            old: object(json!({"id": id, "name": name}), &["id"], true),
            new: object(json!({"id": id}), &["id"], true),
            backward: false,
            forward: true,
        },
        Row {
            name: "open model closed",
            old: object(json!({"id": id}), &["id"], false),
            new: object(json!({"id": id}), &["id"], true),
            backward: false,
            forward: true,
        },
        Row {
            name: "items narrowed",
            old: json!({"type": "array", "items": {"type": "number"}}),
            new: json!({"type": "array", "items": {"type": "integer"}}),
            backward: false,
            forward: true,
        },
        Row {
            name: "nested field through a local $ref changed type",
            old: json!({
                "$defs": {"address": object(json!({"zip": name}), &[], false)},
                "type": "object",
                "properties": {"address": {"$ref": "#/$defs/address"}}
            }),
            new: json!({
                "$defs": {"address": object(json!({"zip": id}), &[], false)},
                "type": "object",
                "properties": {"address": {"$ref": "#/$defs/address"}}
            }),
            backward: false,
            forward: false,
        },
        Row {
            name: "nested new required field",
            old: object(
                json!({"a": object(json!({"x": id}), &[], false)}),
                &[],
                false,
            ),
            new: object(
                json!({"a": object(json!({"x": id}), &["x"], false)}),
                &[],
                false,
            ),
            backward: false,
            forward: true,
        },
        Row {
            name: "reader anyOf covers the writer",
            old: object(json!({"v": name}), &[], false),
            new: object(json!({"v": {"anyOf": [name, id]}}), &[], false),
            backward: true,
            forward: false,
        },
        Row {
            name: "Option<Struct> anyOf [$ref, null]: the struct gains a required field",
            old: optional_struct("anyOf", object(json!({"id": id}), &[], false)),
            new: optional_struct(
                "anyOf",
                object(json!({"id": id, "zip": name}), &["zip"], false),
            ),
            backward: false,
            forward: true,
        },
        Row {
            name: "Option<Struct> anyOf [$ref, null]: a struct field's type changes",
            old: optional_struct("anyOf", object(json!({"id": id}), &[], false)),
            new: optional_struct("anyOf", object(json!({"id": name}), &[], false)),
            backward: false,
            forward: false,
        },
        Row {
            name: "Option<Struct> oneOf [$ref, null]: a struct field narrowed number -> integer",
            old: optional_struct(
                "oneOf",
                object(json!({"n": {"type": "number"}}), &[], false),
            ),
            new: optional_struct("oneOf", object(json!({"n": id}), &[], false)),
            backward: false,
            forward: true,
        },
        Row {
            name: "Option<Struct> anyOf [$ref, null]: the struct gains an optional field",
            old: optional_struct("anyOf", object(json!({"id": id}), &[], false)),
            new: optional_struct("anyOf", object(json!({"id": id, "zip": name}), &[], false)),
            backward: true,
            forward: true,
        },
        Row {
            name: "allOf [$ref]: the struct gains a required field",
            old: all_of_ref(object(json!({"id": id}), &[], false)),
            new: all_of_ref(object(json!({"id": id, "zip": name}), &["zip"], false)),
            backward: false,
            forward: true,
        },
        Row {
            name: "allOf [$ref]: a struct field's type changes",
            old: all_of_ref(object(json!({"id": id}), &[], false)),
            new: all_of_ref(object(json!({"id": name}), &[], false)),
            backward: false,
            forward: false,
        },
        Row {
            name: "allOf [$ref]: the struct gains an optional field",
            old: all_of_ref(object(json!({"id": id}), &[], false)),
            new: all_of_ref(object(json!({"id": id, "zip": name}), &[], false)),
            backward: true,
            forward: true,
        },
        Row {
            name: "recursive $ref unchanged",
            old: json!({"$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}}, "$ref": "#/$defs/node"}),
            new: json!({"$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}}, "$ref": "#/$defs/node"}),
            backward: true,
            forward: true,
        },
    ]
}

fn parsed(document: &serde_json::Value) -> ParsedDefinition {
    ParsedDefinition::parse(SchemaType::JsonSchema, document.to_string().as_bytes())
        .expect("the table's schemas compile")
}

#[test]
fn json_schema_rule_table_per_mode() {
    let mut failures = Vec::new();
    for row in rows() {
        let (old, new) = (parsed(&row.old), parsed(&row.new));
        for (mode, expected) in [
            (CompatibilityMode::None, true),
            (CompatibilityMode::Backward, row.backward),
            (CompatibilityMode::Forward, row.forward),
            (CompatibilityMode::Full, row.backward && row.forward),
        ] {
            let reasons = check(mode, &old, &new).expect("json is checkable");
            if reasons.is_empty() != expected {
                failures.push(format!(
                    "{} in {mode}: expected compatible={expected}, reasons {reasons:?}",
                    row.name
                ));
            }
            if !expected && mode != CompatibilityMode::None {
                assert!(
                    reasons.iter().all(|r| r.contains("$")),
                    "{}: reasons name where: {reasons:?}",
                    row.name
                );
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn reasons_say_what_broke() {
    let old = parsed(&object(json!({"id": {"type": "integer"}}), &["id"], true));
    let new = parsed(&object(
        json!({"name": {"type": "string"}}),
        &["name"],
        true,
    ));
    let reasons = check(CompatibilityMode::Backward, &old, &new).expect("checkable");
    let text = reasons.join("\n");
    assert!(text.contains("new required field \"name\""), "{text}");
    assert!(
        text.contains("field \"id\" dropped from a closed model"),
        "{text}"
    );
    assert!(
        reasons.iter().all(|r| r.starts_with("backward: ")),
        "{text}"
    );
}

#[test]
fn remote_refs_and_unsupported_reader_keywords_are_not_proven() {
    let old = parsed(&json!({"type": "object"}));
    let new = parsed(&json!({"type": "object", "not": {"required": ["x"]}}));
    assert!(
        !check(CompatibilityMode::Backward, &old, &new)
            .expect("checkable")
            .is_empty()
    );
    let walk = super::can_read(
        &json!({"type": "string"}),
        &json!({"$ref": "https://x/s.json"}),
    );
    assert!(walk.iter().any(|r| r.contains("not local")), "{walk:?}");
}
