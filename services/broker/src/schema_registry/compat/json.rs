//! JSON Schema compatibility: a recursive walk proving that a reader schema accepts every
//! instance a writer schema accepts (spec §4). Upstream Danube compares only top-level
//! properties; this walks the whole document.
//!
//! Rules, at every level (`$.a.b[]` names where):
//! - `type`: each writer type must be a reader type (`integer` fits `number`); a reader type
//!   where the writer had none is a narrowing.
//! - `enum` / `const`: every writer value must stay in the reader's set; a reader set where the
//!   writer had none is a narrowing.
//! - bounds (`minimum`, `exclusiveMinimum`, `maximum`, `exclusiveMaximum`, `minLength`,
//!   `maxLength`, `minItems`, `maxItems`, `minProperties`, `maxProperties`), `multipleOf`,
//!   `pattern`, `format`, `uniqueItems`: the reader may not tighten them.
//! - `required`: a field the reader requires and the writer did not is incompatible.
//! - `properties`: each writer property is checked against the reader's (or the reader's
//!   `additionalProperties` schema); a writer property the reader's closed model
//!   (`additionalProperties: false`) dropped is incompatible. A property only the reader
//!   declares is fine while optional (the writer did not declare it), checked against the
//!   writer's `additionalProperties` schema when it has one.
//! - `additionalProperties`: the reader may not close, or constrain, what the writer left
//!   open.
//! - `items`: checked recursively.
//! - local `$ref` (`#`, `#/$defs/…`, `#/definitions/…`) followed on both sides, recursion
//!   bounded; a remote `$ref` cannot be proven compatible.
//! - `allOf` in the reader: the writer must satisfy each branch; in the writer: the reader
//!   must read one branch. Equal `anyOf`/`oneOf`/`allOf` (and unsupported keywords) are
//!   skipped only when they hold no `$ref`, which resolves against a different root on each
//!   side. `anyOf` / `oneOf` in the
//!   writer: each branch is checked; in the reader: some branch must accept the writer
//!   (`oneOf`'s exclusivity is not checked).
//! - any other constraining keyword the reader has (`not`, `if`, `patternProperties`,
//!   `dependentRequired`, …) with a value different from the writer's cannot be proven
//!   compatible and is reported.
//!
//! Keywords of the writer that are not understood only narrow the writer, so ignoring them
//! errs on the side of reporting an incompatibility.

use std::collections::HashSet;

use serde_json::{Map, Value};

/// Deepest nesting walked (schema levels and `$ref` hops).
const MAX_DEPTH: usize = 64;
/// Most schema pairs compared for one check: `anyOf` against `anyOf` multiplies.
const MAX_STEPS: usize = 20_000;

/// Reader keywords this walk does not reason about: any difference from the writer is
/// reported as unprovable.
const UNSUPPORTED: &[&str] = &[
    "not",
    "if",
    "then",
    "else",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "patternProperties",
    "propertyNames",
    "contains",
    "minContains",
    "maxContains",
    "prefixItems",
    "additionalItems",
    "unevaluatedProperties",
    "unevaluatedItems",
];

/// Why some instance valid under `writer` may be invalid under `reader`; empty = none.
pub fn can_read(writer: &Value, reader: &Value) -> Vec<String> {
    let mut walk = Walk {
        writer_root: writer,
        reader_root: reader,
        in_progress: HashSet::new(),
        steps: 0,
    };
    walk.node(writer, reader, "$", 0)
}

struct Walk<'a> {
    writer_root: &'a Value,
    reader_root: &'a Value,
    /// Pairs being compared further up the stack: meeting one again (a recursive `$ref`)
    /// assumes it holds, which is what the enclosing comparison decides.
    in_progress: HashSet<(usize, usize)>,
    steps: usize,
}

/// How a schema treats properties it does not declare.
enum Additional<'v> {
    Open,
    Closed,
    Schema(&'v Value),
}

fn additional(schema: &Map<String, Value>) -> Additional<'_> {
    match schema.get("additionalProperties") {
        None | Some(Value::Bool(true)) => Additional::Open,
        Some(Value::Bool(false)) => Additional::Closed,
        Some(other) => Additional::Schema(other),
    }
}

impl Walk<'_> {
    fn node(&mut self, writer: &Value, reader: &Value, path: &str, depth: usize) -> Vec<String> {
        self.steps += 1;
        if depth > MAX_DEPTH || self.steps > MAX_STEPS {
            return vec![format!(
                "{path}: the schemas are too deep or too branched to compare"
            )];
        }
        let writer = match resolve(self.writer_root, writer) {
            Ok(found) => found,
            Err(reason) => return vec![format!("{path}: writer {reason}")],
        };
        let reader_target = match resolve(self.reader_root, reader) {
            Ok(found) => found,
            Err(reason) => return vec![format!("{path}: reader {reason}")],
        };
        if !std::ptr::eq(reader, reader_target) {
            // `$ref` beside other keywords: the instance must satisfy both.
            let mut reasons = self.node(writer, reader_target, path, depth + 1);
            if let Value::Object(fields) = reader {
                let mut rest = fields.clone();
                rest.remove("$ref");
                if rest.keys().any(|key| constrains(key)) {
                    reasons.extend(self.node(writer, &Value::Object(rest), path, depth + 1));
                }
            }
            return reasons;
        }
        let key = (
            writer as *const Value as usize,
            reader as *const Value as usize,
        );
        if !self.in_progress.insert(key) {
            return Vec::new();
        }
        let reasons = self.compare(writer, reader, path, depth);
        self.in_progress.remove(&key);
        reasons
    }

    fn compare(&mut self, writer: &Value, reader: &Value, path: &str, depth: usize) -> Vec<String> {
        let empty = Map::new();
        let reader = match reader {
            Value::Bool(true) => return Vec::new(),
            Value::Bool(false) => {
                return match writer {
                    Value::Bool(false) => Vec::new(),
                    _ => vec![format!("{path}: the reader accepts nothing here")],
                };
            }
            Value::Object(fields) => fields,
            _ => return vec![format!("{path}: the reader's schema is not a schema")],
        };
        let writer = match writer {
            Value::Bool(false) => return Vec::new(),
            Value::Bool(true) => &empty,
            Value::Object(fields) => fields,
            _ => return vec![format!("{path}: the writer's schema is not a schema")],
        };
        // A writer union: every branch must be readable.
        for keyword in ["anyOf", "oneOf"] {
            if let Some(Value::Array(branches)) = writer.get(keyword)
                && !provably_same(reader.get(keyword), writer.get(keyword))
            {
                let mut base = writer.clone();
                base.remove(keyword);
                let mut reasons = Vec::new();
                for (index, branch) in branches.iter().enumerate() {
                    let merged = overlay(&base, self.writer_root, branch);
                    for reason in
                        self.node(&merged, &Value::Object(reader.clone()), path, depth + 1)
                    {
                        reasons.push(format!("{reason} (writer {keyword}[{index}])"));
                    }
                }
                return reasons;
            }
        }
        let mut reasons = Vec::new();
        // A reader union: some branch must accept the writer.
        for keyword in ["anyOf", "oneOf"] {
            if let Some(Value::Array(branches)) = reader.get(keyword)
                && !provably_same(reader.get(keyword), writer.get(keyword))
            {
                let mut base = reader.clone();
                base.remove(keyword);
                let fits = branches.iter().any(|branch| {
                    let merged = overlay(&base, self.reader_root, branch);
                    self.node(&Value::Object(writer.clone()), &merged, path, depth + 1)
                        .is_empty()
                });
                if !fits {
                    reasons.push(format!(
                        "{path}: no branch of the reader's {keyword} accepts the writer's data"
                    ));
                }
                return reasons;
            }
        }
        // A writer intersection: its data satisfies every branch, so one branch the reader
        // can read is enough (needing two together is reported, erring on the safe side).
        if let Some(Value::Array(branches)) = writer.get("allOf")
            && !provably_same(reader.get("allOf"), writer.get("allOf"))
        {
            let mut base = writer.clone();
            base.remove("allOf");
            let whole = Value::Object(reader.clone());
            let mut first_reasons = None;
            for branch in branches {
                let merged = overlay(&base, self.writer_root, branch);
                let branch_reasons = self.node(&merged, &whole, path, depth + 1);
                if branch_reasons.is_empty() {
                    return Vec::new();
                }
                first_reasons.get_or_insert(branch_reasons);
            }
            if let Some(first) = first_reasons {
                return first
                    .into_iter()
                    .map(|reason| {
                        format!("{reason} (no single branch of the writer's allOf is readable)")
                    })
                    .collect();
            }
        }
        if let Some(Value::Array(branches)) = reader.get("allOf")
            && !provably_same(reader.get("allOf"), writer.get("allOf"))
        {
            let whole = Value::Object(writer.clone());
            for branch in branches {
                reasons.extend(self.node(&whole, branch, path, depth + 1));
            }
        }
        for keyword in UNSUPPORTED {
            if let Some(value) = reader.get(*keyword)
                && !provably_same(writer.get(*keyword), Some(value))
            {
                reasons.push(format!(
                    "{path}: the reader's {keyword} differs from the writer's; it cannot be proven compatible"
                ));
            }
        }
        let writer_types = types_of(writer);
        check_types(&writer_types, reader, path, &mut reasons);
        check_values(writer, reader, path, &mut reasons);
        let may_be = |kind: &str| match &writer_types {
            None => true,
            Some(types) => types
                .iter()
                .any(|t| t == kind || (kind == "number" && t == "integer")),
        };
        if may_be("number") {
            check_bound(
                writer,
                reader,
                "minimum",
                "exclusiveMinimum",
                Side::Lower,
                path,
                &mut reasons,
            );
            check_bound(
                writer,
                reader,
                "maximum",
                "exclusiveMaximum",
                Side::Upper,
                path,
                &mut reasons,
            );
            check_multiple_of(writer, reader, path, &mut reasons);
        }
        if may_be("string") {
            check_count(writer, reader, "minLength", Side::Lower, path, &mut reasons);
            check_count(writer, reader, "maxLength", Side::Upper, path, &mut reasons);
            for keyword in ["pattern", "format"] {
                if let Some(value) = reader.get(keyword)
                    && writer.get(keyword) != Some(value)
                {
                    reasons.push(format!(
                        "{path}: the reader adds or changes {keyword} {value}"
                    ));
                }
            }
        }
        if may_be("array") {
            check_count(writer, reader, "minItems", Side::Lower, path, &mut reasons);
            check_count(writer, reader, "maxItems", Side::Upper, path, &mut reasons);
            if reader.get("uniqueItems") == Some(&Value::Bool(true))
                && writer.get("uniqueItems") != Some(&Value::Bool(true))
            {
                reasons.push(format!("{path}: the reader requires unique items"));
            }
            if let Some(reader_items) = reader.get("items") {
                let writer_items = writer.get("items").unwrap_or(&Value::Bool(true));
                reasons.extend(self.node(
                    writer_items,
                    reader_items,
                    &format!("{path}[]"),
                    depth + 1,
                ));
            }
        }
        if may_be("object") {
            check_count(
                writer,
                reader,
                "minProperties",
                Side::Lower,
                path,
                &mut reasons,
            );
            check_count(
                writer,
                reader,
                "maxProperties",
                Side::Upper,
                path,
                &mut reasons,
            );
            self.check_object(writer, reader, path, depth, &mut reasons);
        }
        reasons
    }

    fn check_object(
        &mut self,
        writer: &Map<String, Value>,
        reader: &Map<String, Value>,
        path: &str,
        depth: usize,
        reasons: &mut Vec<String>,
    ) {
        let required = |schema: &Map<String, Value>| -> Vec<String> {
            match schema.get("required") {
                Some(Value::Array(names)) => names
                    .iter()
                    .filter_map(|name| name.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            }
        };
        let writer_required = required(writer);
        for name in required(reader) {
            if !writer_required.contains(&name) {
                reasons.push(format!("{path}: new required field {name:?}"));
            }
        }
        let empty = Map::new();
        let properties = |schema: &Map<String, Value>| match schema.get("properties") {
            Some(Value::Object(found)) => found.clone(),
            _ => empty.clone(),
        };
        let writer_properties = properties(writer);
        let reader_properties = properties(reader);
        let writer_additional = additional(writer);
        let reader_additional = additional(reader);
        for (name, writer_schema) in &writer_properties {
            let inner = format!("{path}.{name}");
            match (reader_properties.get(name), &reader_additional) {
                (Some(reader_schema), _) => {
                    reasons.extend(self.node(writer_schema, reader_schema, &inner, depth + 1))
                }
                (None, Additional::Closed) => reasons.push(format!(
                    "{path}: field {name:?} dropped from a closed model (additionalProperties false)"
                )),
                (None, Additional::Schema(reader_schema)) => {
                    reasons.extend(self.node(writer_schema, reader_schema, &inner, depth + 1))
                }
                (None, Additional::Open) => {}
            }
        }
        for (name, reader_schema) in &reader_properties {
            if writer_properties.contains_key(name) {
                continue;
            }
            // Open writer: an added optional property, by design accepted (the writer never
            // declared it). A writer schema for undeclared fields must fit the new one.
            if let Additional::Schema(writer_schema) = writer_additional {
                reasons.extend(self.node(
                    writer_schema,
                    reader_schema,
                    &format!("{path}.{name}"),
                    depth + 1,
                ));
            }
        }
        match (&writer_additional, &reader_additional) {
            (_, Additional::Open) | (Additional::Closed, _) => {}
            (Additional::Open, Additional::Closed) | (Additional::Schema(_), Additional::Closed) => {
                reasons.push(format!(
                    "{path}: the reader closes the model (additionalProperties false) the writer leaves open"
                ))
            }
            (Additional::Open, Additional::Schema(reader_schema)) => reasons.extend(self.node(
                &Value::Bool(true),
                reader_schema,
                &format!("{path}.*"),
                depth + 1,
            )),
            (Additional::Schema(writer_schema), Additional::Schema(reader_schema)) => reasons.extend(
                self.node(writer_schema, reader_schema, &format!("{path}.*"), depth + 1),
            ),
        }
    }
}

/// Whether two subschemas can be skipped as equal: textually equal and free of `$ref`, since
/// a `$ref` resolves against its own document's root and the two roots may differ.
fn provably_same(a: Option<&Value>, b: Option<&Value>) -> bool {
    a == b && !a.is_some_and(contains_ref)
}

fn contains_ref(value: &Value) -> bool {
    match value {
        Value::Object(fields) => fields
            .iter()
            .any(|(key, inner)| key == "$ref" || contains_ref(inner)),
        Value::Array(items) => items.iter().any(contains_ref),
        _ => false,
    }
}

/// Whether `keyword` constrains instances (as opposed to annotating them).
fn constrains(keyword: &str) -> bool {
    !matches!(
        keyword,
        "$schema"
            | "$id"
            | "$comment"
            | "$defs"
            | "definitions"
            | "title"
            | "description"
            | "default"
            | "examples"
            | "deprecated"
            | "readOnly"
            | "writeOnly"
    )
}

/// Follows `schema`'s local `$ref` chain within `root`.
fn resolve<'v>(root: &'v Value, schema: &'v Value) -> Result<&'v Value, String> {
    let mut current = schema;
    for _ in 0..MAX_DEPTH {
        let Some(Value::String(reference)) = current.get("$ref") else {
            return Ok(current);
        };
        let Some(pointer) = reference.strip_prefix('#') else {
            return Err(format!(
                "$ref {reference:?} is not local (only #… references are followed)"
            ));
        };
        let pointer = pointer.replace("%25", "%");
        current = root
            .pointer(&pointer)
            .ok_or_else(|| format!("$ref {reference:?} points nowhere"))?;
    }
    Err("$ref chain too long".to_owned())
}

/// `base` with `branch`'s keywords laid over it (`branch`'s `$ref` followed first).
fn overlay(base: &Map<String, Value>, root: &Value, branch: &Value) -> Value {
    let branch = resolve(root, branch).unwrap_or(branch);
    match branch {
        Value::Object(fields) => {
            let mut merged = base.clone();
            for (key, value) in fields {
                merged.insert(key.clone(), value.clone());
            }
            Value::Object(merged)
        }
        Value::Bool(true) => Value::Object(base.clone()),
        other => other.clone(),
    }
}

/// The JSON types a schema allows: its `type`, else those of its `enum`/`const` values;
/// `None` = any.
fn types_of(schema: &Map<String, Value>) -> Option<Vec<String>> {
    match schema.get("type") {
        Some(Value::String(one)) => return Some(vec![one.clone()]),
        Some(Value::Array(many)) => {
            return Some(
                many.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect(),
            );
        }
        _ => {}
    }
    let values = allowed_values(schema)?;
    Some(
        values
            .iter()
            .map(|value| value_type(value).to_owned())
            .collect(),
    )
}

fn value_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(number) if number.is_i64() || number.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn allowed_values(schema: &Map<String, Value>) -> Option<Vec<Value>> {
    if let Some(constant) = schema.get("const") {
        return Some(vec![constant.clone()]);
    }
    match schema.get("enum") {
        Some(Value::Array(values)) => Some(values.clone()),
        _ => None,
    }
}

fn check_types(
    writer_types: &Option<Vec<String>>,
    reader: &Map<String, Value>,
    path: &str,
    reasons: &mut Vec<String>,
) {
    let Some(reader_types) = types_of_declared(reader) else {
        return;
    };
    match writer_types {
        None => reasons.push(format!(
            "{path}: type narrowed from any to {}",
            reader_types.join("|")
        )),
        Some(types) => {
            for kind in types {
                let accepted = reader_types
                    .iter()
                    .any(|t| t == kind || (t == "number" && kind == "integer"));
                if !accepted {
                    reasons.push(format!(
                        "{path}: type narrowed: the reader does not accept {kind} (it accepts {})",
                        reader_types.join("|")
                    ));
                }
            }
        }
    }
}

/// The reader's declared `type` only: its enum is checked by [`check_values`].
fn types_of_declared(schema: &Map<String, Value>) -> Option<Vec<String>> {
    match schema.get("type") {
        Some(Value::String(one)) => Some(vec![one.clone()]),
        Some(Value::Array(many)) => Some(
            many.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect(),
        ),
        _ => None,
    }
}

fn check_values(
    writer: &Map<String, Value>,
    reader: &Map<String, Value>,
    path: &str,
    reasons: &mut Vec<String>,
) {
    let Some(reader_values) = allowed_values(reader) else {
        return;
    };
    match allowed_values(writer) {
        None => reasons.push(format!(
            "{path}: the reader restricts values to an enum the writer does not have"
        )),
        Some(writer_values) => {
            for value in writer_values {
                if !reader_values
                    .iter()
                    .any(|allowed| same_value(allowed, &value))
                {
                    reasons.push(format!(
                        "{path}: enum tightened: {value} is no longer accepted"
                    ));
                }
            }
        }
    }
}

/// JSON Schema equality: numbers compare by value (1 = 1.0).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Lower,
    Upper,
}

/// A numeric bound as (value, exclusive), from draft 6+ (`exclusiveMinimum: 5`) or draft 4
/// (`minimum: 5, exclusiveMinimum: true`) spelling; the tighter of the two when both.
fn bound(
    schema: &Map<String, Value>,
    inclusive: &str,
    exclusive: &str,
    side: Side,
) -> Option<(f64, bool)> {
    let plain = schema.get(inclusive).and_then(Value::as_f64);
    let (plain_exclusive, strict) = match schema.get(exclusive) {
        Some(Value::Bool(flag)) => (*flag, None),
        Some(other) => (false, other.as_f64()),
        None => (false, None),
    };
    let candidates = plain
        .map(|value| (value, plain_exclusive))
        .into_iter()
        .chain(strict.map(|value| (value, true)));
    candidates.reduce(|a, b| if tighter(b, a, side) { b } else { a })
}

/// Whether bound `a` admits strictly less than bound `b`.
fn tighter(a: (f64, bool), b: (f64, bool), side: Side) -> bool {
    match side {
        Side::Lower => a.0 > b.0 || (a.0 == b.0 && a.1 && !b.1),
        Side::Upper => a.0 < b.0 || (a.0 == b.0 && a.1 && !b.1),
    }
}

fn check_bound(
    writer: &Map<String, Value>,
    reader: &Map<String, Value>,
    inclusive: &str,
    exclusive: &str,
    side: Side,
    path: &str,
    reasons: &mut Vec<String>,
) {
    let Some(reader_bound) = bound(reader, inclusive, exclusive, side) else {
        return;
    };
    let tightened = match bound(writer, inclusive, exclusive, side) {
        None => true,
        Some(writer_bound) => tighter(reader_bound, writer_bound, side),
    };
    if tightened {
        let (value, strict) = reader_bound;
        let name = if strict { exclusive } else { inclusive };
        reasons.push(format!(
            "{path}: bound tightened: the reader's {name} is {value}"
        ));
    }
}

fn check_count(
    writer: &Map<String, Value>,
    reader: &Map<String, Value>,
    keyword: &str,
    side: Side,
    path: &str,
    reasons: &mut Vec<String>,
) {
    let Some(reader_value) = reader.get(keyword).and_then(Value::as_f64) else {
        return;
    };
    let tightened = match writer.get(keyword).and_then(Value::as_f64) {
        None => side == Side::Upper || reader_value > 0.0,
        Some(writer_value) => match side {
            Side::Lower => reader_value > writer_value,
            Side::Upper => reader_value < writer_value,
        },
    };
    if tightened {
        reasons.push(format!(
            "{path}: bound tightened: the reader's {keyword} is {reader_value}"
        ));
    }
}

fn check_multiple_of(
    writer: &Map<String, Value>,
    reader: &Map<String, Value>,
    path: &str,
    reasons: &mut Vec<String>,
) {
    let Some(reader_step) = reader.get("multipleOf").and_then(Value::as_f64) else {
        return;
    };
    let kept = writer
        .get("multipleOf")
        .and_then(Value::as_f64)
        .is_some_and(|writer_step| {
            let ratio = writer_step / reader_step;
            ratio.is_finite() && (ratio - ratio.round()).abs() < 1e-9
        });
    if !kept {
        reasons.push(format!(
            "{path}: the reader requires multipleOf {reader_step}"
        ));
    }
}

#[cfg(test)]
mod tests;
