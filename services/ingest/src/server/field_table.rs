//! The envelope's messages flattened once at start into tables the canonical pass reads per
//! key: field lookup among the proto names of the key's length, each field's JSON shape, enum
//! names and `min_len` rules resolved to indices.
//!
//! Why: resolving each JSON key through `prost-reflect` (`get_field_by_name`, `kind()`,
//! `containing_oneof()`) hashes the name with SipHash and builds descriptor handles several
//! times per key; those lookups were a fifth of the server's CPU per event. The tables answer
//! the same questions from plain slices.

use std::collections::HashMap;

use prost_reflect::{EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor};

use super::schema::Schema;

/// What a canonical value of a field (or of a list item or map value) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueKind {
    /// A JSON string.
    Str,
    /// A JSON boolean.
    Bool,
    /// A JSON integer within `i32`.
    I32,
    /// A JSON integer within `i64`.
    I64,
    /// A JSON integer within `u32`.
    U32,
    /// A JSON integer within `u64`.
    U64,
    /// A JSON string, the first name of one of the enum's numbers (index into
    /// [`FieldTables::enums`]).
    Enum(usize),
    /// A JSON object of a message (index into [`FieldTables::messages`]).
    Message(usize),
    /// Nothing is canonical: floats, bytes, `NullValue`, well-known types, maps with
    /// non-string keys or message values. The general path reads them.
    Never,
}

/// How a field's value is laid out in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// One value.
    Single,
    /// A JSON array of values.
    List,
    /// A JSON object of string keys to values.
    Map,
}

/// One field, as the canonical pass needs it.
#[derive(Debug, Clone)]
pub(crate) struct FieldInfo {
    /// The proto name (the only key the canonical pass accepts for it).
    pub(crate) name: Box<str>,
    pub(crate) shape: Shape,
    /// Of the value, list item or map value.
    pub(crate) kind: ValueKind,
    /// Its oneof (index among the message's oneofs), synthetic ones included as
    /// `containing_oneof` reports them.
    pub(crate) oneof: Option<usize>,
    /// Whether a default value is printed (presence), per `FieldDescriptor::supports_presence`.
    pub(crate) presence: bool,
    /// A member of the envelope's payload oneof.
    pub(crate) in_payload: bool,
    /// Where its name sorts among the message's names (and, for the envelope, the names the
    /// record adds): a record's members are ordered by it as `serde_json`'s map orders names.
    pub(crate) rank: u32,
}

/// One message's fields.
#[derive(Debug, Clone)]
pub(crate) struct MessageTable {
    pub(crate) fields: Vec<FieldInfo>,
    /// `(proto name, index into fields)` grouped by the name's length (the index into the
    /// outer list): a key is compared only with the few names of its own length.
    by_len: Vec<Vec<(Box<str>, usize)>>,
    /// `(index into fields, minimum characters)` of its `min_len` rules, in the rules' order.
    pub(crate) min_len: Vec<(usize, u64)>,
    /// The rank of each name the record adds to this message (see [`FieldInfo::rank`]).
    added: Vec<(&'static str, u32)>,
}

impl MessageTable {
    /// The field whose proto name is `name`.
    pub(crate) fn field(&self, name: &str) -> Option<(usize, &FieldInfo)> {
        let &(_, index) = self
            .by_len
            .get(name.len())?
            .iter()
            .find(|(n, _)| same_bytes(n.as_bytes(), name.as_bytes()))?;
        self.fields.get(index).map(|f| (index, f))
    }

    /// The rank of `name`, one of the names given to [`FieldTables::build`] as added.
    pub(crate) fn added_rank(&self, name: &str) -> Option<u32> {
        self.added.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
    }
}

/// Whether `a` and `b`, of the same length, hold the same bytes. Names are short: a word or
/// two compared in registers instead of a call to `memcmp` per candidate, which was most of
/// the cost of looking a key up (~70 instructions per key).
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    // The first and the last eight bytes (overlapping when shorter than 16), then the middle.
    let word = |bytes: &[u8], at: usize| {
        let mut eight = [0_u8; 8];
        if let Some(part) = bytes.get(at..at + 8) {
            eight.copy_from_slice(part);
        }
        u64::from_le_bytes(eight)
    };
    word(a, 0) == word(b, 0)
        && word(a, n - 8) == word(b, n - 8)
        && (n <= 16 || a.get(8..n - 8) == b.get(8..n - 8))
}

/// One enum's canonical names.
#[derive(Debug, Clone)]
pub(crate) struct EnumTable {
    /// `(name, number)` of each number's first name, sorted by name (an alias prints as its
    /// number's first name, so only those are canonical).
    names: Vec<(Box<str>, i32)>,
}

impl EnumTable {
    /// The number of `name` if it is canonical.
    pub(crate) fn number(&self, name: &str) -> Option<i32> {
        let at = self.names.binary_search_by(|(n, _)| (**n).cmp(name)).ok()?;
        Some(self.names[at].1)
    }
}

/// The tables of every message reachable from the envelope.
#[derive(Debug, Clone)]
pub(crate) struct FieldTables {
    pub(crate) messages: Vec<MessageTable>,
    pub(crate) enums: Vec<EnumTable>,
    /// Index of `EventEnvelope` in [`FieldTables::messages`].
    pub(crate) envelope: usize,
}

impl FieldTables {
    /// Flattens the envelope of `schema` and the messages it reaches; `added` are the names
    /// the record adds to the envelope, ranked with its fields.
    pub(crate) fn build(schema: &Schema, added: &[&'static str]) -> FieldTables {
        let mut builder = Builder::default();
        let envelope = builder.message(schema, &schema.envelope, added);
        FieldTables {
            messages: builder
                .messages
                .into_iter()
                .map(|m| m.unwrap_or_else(empty_table))
                .collect(),
            enums: builder.enums,
            envelope,
        }
    }
}

fn empty_table() -> MessageTable {
    MessageTable {
        fields: Vec::new(),
        by_len: Vec::new(),
        min_len: Vec::new(),
        added: Vec::new(),
    }
}

#[derive(Default)]
struct Builder {
    /// `None` while a message is being built (a recursive message refers to its own index).
    messages: Vec<Option<MessageTable>>,
    message_index: HashMap<String, usize>,
    enums: Vec<EnumTable>,
    enum_index: HashMap<String, usize>,
}

impl Builder {
    fn message(
        &mut self,
        schema: &Schema,
        desc: &MessageDescriptor,
        added: &[&'static str],
    ) -> usize {
        if let Some(&index) = self.message_index.get(desc.full_name()) {
            return index;
        }
        let index = self.messages.len();
        self.messages.push(None);
        self.message_index
            .insert(desc.full_name().to_owned(), index);
        let oneofs: Vec<_> = desc.oneofs().collect();
        // Byte order of the names, as `String`'s `Ord` (the `BTreeMap` of a `Map`).
        let mut names: Vec<String> = desc.fields().map(|f| f.name().to_owned()).collect();
        names.extend(added.iter().map(|name| (*name).to_owned()));
        names.sort_unstable();
        let rank = |name: &str| {
            names
                .iter()
                .position(|n| *n == name)
                .and_then(|r| u32::try_from(r).ok())
                .unwrap_or(u32::MAX)
        };
        let added = added.iter().map(|name| (*name, rank(name))).collect();
        let fields: Vec<FieldInfo> = desc
            .fields()
            .map(|field| {
                let (shape, kind) = self.shape_and_kind(schema, &field);
                let oneof = field
                    .containing_oneof()
                    .and_then(|o| oneofs.iter().position(|x| *x == o));
                FieldInfo {
                    name: field.name().into(),
                    shape,
                    kind,
                    oneof,
                    presence: field.supports_presence(),
                    in_payload: field.containing_oneof().as_ref() == Some(&schema.payload),
                    rank: rank(field.name()),
                }
            })
            .collect();
        let mut by_len: Vec<Vec<(Box<str>, usize)>> = Vec::new();
        for (i, field) in fields.iter().enumerate() {
            let len = field.name.len();
            if by_len.len() <= len {
                by_len.resize_with(len + 1, Vec::new);
            }
            by_len[len].push((field.name.clone(), i));
        }
        let min_len = schema
            .min_len(desc)
            .iter()
            .filter_map(|(name, min)| {
                let at = fields.iter().position(|f| *f.name == **name)?;
                Some((at, *min))
            })
            .collect();
        self.messages[index] = Some(MessageTable {
            fields,
            by_len,
            min_len,
            added,
        });
        index
    }

    fn shape_and_kind(&mut self, schema: &Schema, field: &FieldDescriptor) -> (Shape, ValueKind) {
        if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                return (Shape::Map, ValueKind::Never);
            };
            let key = entry.map_entry_key_field().kind();
            let value = entry.map_entry_value_field().kind();
            let kind = match (key, value) {
                (Kind::String, Kind::Message(_)) | (_, Kind::Message(_)) => ValueKind::Never,
                (Kind::String, value) => self.kind(schema, &value),
                _ => ValueKind::Never,
            };
            (Shape::Map, kind)
        } else if field.is_list() {
            (Shape::List, self.kind(schema, &field.kind()))
        } else {
            (Shape::Single, self.kind(schema, &field.kind()))
        }
    }

    fn kind(&mut self, schema: &Schema, kind: &Kind) -> ValueKind {
        match kind {
            Kind::String => ValueKind::Str,
            Kind::Bool => ValueKind::Bool,
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => ValueKind::I32,
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => ValueKind::I64,
            Kind::Uint32 | Kind::Fixed32 => ValueKind::U32,
            Kind::Uint64 | Kind::Fixed64 => ValueKind::U64,
            Kind::Enum(enum_ty) if enum_ty.full_name() != "google.protobuf.NullValue" => {
                ValueKind::Enum(self.enumeration(enum_ty))
            }
            Kind::Message(message) if !message.full_name().starts_with("google.protobuf.") => {
                ValueKind::Message(self.message(schema, message, &[]))
            }
            // Floats print as the f32/f64 they are read into, bytes as re-encoded base64,
            // well-known types in their own JSON forms: left to the general path.
            Kind::Enum(_) | Kind::Message(_) | Kind::Float | Kind::Double | Kind::Bytes => {
                ValueKind::Never
            }
        }
    }

    fn enumeration(&mut self, desc: &EnumDescriptor) -> usize {
        if let Some(&index) = self.enum_index.get(desc.full_name()) {
            return index;
        }
        let mut names: Vec<(Box<str>, i32)> = desc
            .values()
            .filter(|v| {
                desc.get_value(v.number())
                    .is_some_and(|first| first.name() == v.name())
            })
            .map(|v| (v.name().into(), v.number()))
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let index = self.enums.len();
        self.enums.push(EnumTable { names });
        self.enum_index.insert(desc.full_name().to_owned(), index);
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_is_equality() {
        let texts = [
            "",
            "a",
            "b",
            "ab",
            "app_id",
            "app_ie",
            "bpp_id",
            "device_id",
            "timestamp_ms",
            "timestamp_mt",
            "custom_event",
            "idempotency_key",
            "idempotency_kez",
            "xdempotency_key",
            "a_name_longer_than_16",
            "a_name_longer_than_17",
            "a_name_lxnger_than_16",
            "0123456789abcdef",
            "0123456789abcdeg",
            "0123456x",
            "01234567",
        ];
        for a in texts {
            for b in texts {
                assert_eq!(same_bytes(a.as_bytes(), b.as_bytes()), a == b, "{a} / {b}");
            }
        }
    }
}
