//! Avro compatibility through `apache-avro`'s schema resolution rules (field defaults, numeric
//! promotions, unions, enum symbols, names and aliases).

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;

/// Why data written with `writer` cannot be read with `reader`; empty = it can.
pub fn can_read(writer: &Schema, reader: &Schema) -> Vec<String> {
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(()) => Vec::new(),
        Err(error) => vec![format!(
            "the reader cannot resolve the writer's data: {error}"
        )],
    }
}

#[cfg(test)]
mod tests;
