//! A pre-pass over an Avro payload that proves its decoding stays within the payload's size
//! before apache-avro decodes it.
//!
//! apache-avro 0.21 trusts the block count of an array or map: it reserves `count` entries
//! before reading any, so a 6-byte payload claiming 500 million longs asks for 20+ GiB and
//! aborts the process. It also recurses once per nested value, so a deep recursive datum can
//! overflow the stack. This walk reads the same encoding without allocating, and refuses a
//! payload whose arrays and maps claim more items in total than the payload has bytes (every
//! item of a sensible schema takes at least one byte; items that take none, like `null`, are
//! the ones that would let a few bytes stand for billions of values), or that nests deeper
//! than [`MAX_DEPTH`].

use std::collections::HashMap;

use apache_avro::schema::{Name, Namespace, ResolvedSchema, Schema};

/// Deepest nesting of values a payload may have.
pub(super) const MAX_DEPTH: usize = 64;

/// Checks that `payload` decodes as one datum of `schema` within the bounds above.
///
/// Errors: why it does not, as text.
pub(super) fn check_payload_bounds(schema: &Schema, payload: &[u8]) -> Result<(), String> {
    let resolved = ResolvedSchema::try_from(schema)
        .map_err(|error| format!("schema does not resolve: {error}"))?;
    let mut walk = Walk {
        names: resolved.get_names(),
        rest: payload,
        items_left: payload.len(),
    };
    walk.value(schema, &None, 0)
}

struct Walk<'a, 's> {
    names: &'a HashMap<Name, &'s Schema>,
    rest: &'a [u8],
    items_left: usize,
}

impl Walk<'_, '_> {
    fn value(
        &mut self,
        schema: &Schema,
        namespace: &Namespace,
        depth: usize,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("payload nests deeper than {MAX_DEPTH} values"));
        }
        match schema {
            Schema::Null => Ok(()),
            Schema::Boolean => self.skip(1),
            Schema::Int
            | Schema::Long
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos
            | Schema::Enum(_) => self.varint().map(drop),
            Schema::Float => self.skip(4),
            Schema::Double => self.skip(8),
            Schema::Duration => self.skip(12),
            Schema::Fixed(fixed) => self.skip(fixed.size),
            Schema::Bytes | Schema::String | Schema::BigDecimal | Schema::Uuid => {
                self.length_prefixed()
            }
            Schema::Decimal(decimal) => self.value(&decimal.inner, namespace, depth + 1),
            Schema::Array(array) => {
                self.blocks(|walk| walk.value(&array.items, namespace, depth + 1))
            }
            Schema::Map(map) => self.blocks(|walk| {
                walk.length_prefixed()?;
                walk.value(&map.types, namespace, depth + 1)
            }),
            Schema::Union(union) => {
                let index = self.varint()?;
                let variant = usize::try_from(index)
                    .ok()
                    .and_then(|index| union.variants().get(index))
                    .ok_or_else(|| format!("union index {index} out of range"))?;
                self.value(variant, namespace, depth + 1)
            }
            Schema::Record(record) => {
                let inner = record.name.fully_qualified_name(namespace).namespace;
                record
                    .fields
                    .iter()
                    .try_for_each(|field| self.value(&field.schema, &inner, depth + 1))
            }
            Schema::Ref { name } => {
                let name = name.fully_qualified_name(namespace);
                let resolved = *self
                    .names
                    .get(&name)
                    .ok_or_else(|| format!("schema names no type {name}"))?;
                self.value(resolved, &name.namespace, depth + 1)
            }
        }
    }

    /// Array and map blocks: a count, its items, until a count of zero. A negative count is
    /// followed by the block's size in bytes.
    fn blocks(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        loop {
            let count = self.varint()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                self.varint()?;
            }
            let count = usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX);
            if count > self.items_left {
                return Err(format!(
                    "block of {count} items is more than the payload can hold"
                ));
            }
            self.items_left -= count;
            for _ in 0..count {
                item(self)?;
            }
        }
    }

    fn length_prefixed(&mut self) -> Result<(), String> {
        let length = self.varint()?;
        let length = usize::try_from(length).map_err(|_| format!("negative length {length}"))?;
        self.skip(length)
    }

    fn skip(&mut self, bytes: usize) -> Result<(), String> {
        if bytes > self.rest.len() {
            return Err(format!(
                "payload ends {} bytes before its datum does",
                bytes - self.rest.len()
            ));
        }
        self.rest = &self.rest[bytes..];
        Ok(())
    }

    /// A zig-zag varint of at most 10 bytes.
    fn varint(&mut self) -> Result<i64, String> {
        let mut raw: u64 = 0;
        for (index, byte) in self.rest.iter().enumerate().take(10) {
            raw |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                self.rest = &self.rest[index + 1..];
                return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
            }
        }
        Err("payload ends inside, or has an overlong, variable-length integer".to_owned())
    }
}
