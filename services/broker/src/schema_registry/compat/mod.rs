//! Compatibility between a subject's latest version and a candidate (spec §4): backward = the
//! candidate reads data written with the latest, forward = the latest reads data written with
//! the candidate, full = both.
//!
//! - Avro: `apache-avro`'s schema resolution ([`avro`]).
//! - JSON Schema: a recursive walk proving the reader accepts everything the writer does
//!   ([`json`]).
//! - `bytes`, `string`, `number`: nothing to compare beyond the type.
//! - Protobuf: not checked; any mode but `none` is refused.
//! - A change of type is incompatible in every mode but `none`.

pub mod avro;
pub mod json;

use super::definition::{Definition, ParsedDefinition};
use super::error::RegistryError;
use super::types::{CompatibilityMode, SchemaType};

/// The reasons `candidate` is incompatible with `latest` in `mode`; empty = compatible.
///
/// Errors: [`RegistryError::FailedPrecondition`] for Protobuf in a mode other than `none`
/// (no rules to check it by).
pub fn check(
    mode: CompatibilityMode,
    latest: &ParsedDefinition,
    candidate: &ParsedDefinition,
) -> Result<Vec<String>, RegistryError> {
    if mode == CompatibilityMode::None {
        return Ok(Vec::new());
    }
    if latest.schema_type != candidate.schema_type {
        return Ok(vec![format!(
            "schema type changes from {} to {}",
            latest.schema_type, candidate.schema_type
        )]);
    }
    if candidate.schema_type == SchemaType::Protobuf {
        return Err(RegistryError::precondition(format!(
            "protobuf schemas are stored without compatibility checks: mode {mode} needs mode NONE"
        )));
    }
    let (backward, forward) = match mode {
        CompatibilityMode::None => (false, false),
        CompatibilityMode::Backward => (true, false),
        CompatibilityMode::Forward => (false, true),
        CompatibilityMode::Full => (true, true),
    };
    let mut reasons = Vec::new();
    match (&latest.definition, &candidate.definition) {
        (Definition::Json { document: old, .. }, Definition::Json { document: new, .. }) => {
            if backward {
                reasons.extend(prefixed("backward", json::can_read(old, new)));
            }
            if forward {
                reasons.extend(prefixed("forward", json::can_read(new, old)));
            }
        }
        (Definition::Avro(old), Definition::Avro(new)) => {
            if backward {
                reasons.extend(prefixed("backward", avro::can_read(old, new)));
            }
            if forward {
                reasons.extend(prefixed("forward", avro::can_read(new, old)));
            }
        }
        // bytes, string, number: the same type reads the same data.
        _ => {}
    }
    Ok(reasons)
}

fn prefixed(direction: &str, reasons: Vec<String>) -> impl Iterator<Item = String> + '_ {
    reasons
        .into_iter()
        .map(move |reason| format!("{direction}: {reason}"))
}
