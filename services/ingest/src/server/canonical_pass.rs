//! A canonical, valid envelope read and turned into its record in one pass over its JSON, or
//! `None` for the general reading (`strict_json`, `check_fields`, [`canonical`]).
//!
//! The general reading builds a `serde_json::Value` tree (a `String` per key and value, a
//! `BTreeMap` per object), walks it three times resolving every key through `prost-reflect`,
//! then serialises it again. For the events the SDKs send that was most of the server's CPU per
//! event. This pass parses against the [`FieldTables`]: keys and strings stay borrowed from the
//! request where they have no escapes, each key is resolved once from the tables, values are
//! checked for their canonical form and defaults dropped as they are read, and the record is
//! written from what was kept, each object's members sorted as the `BTreeMap` would sort them.
//!
//! It answers only what it is sure of: an event that is valid and canonical. Anything else (a
//! duplicate or unknown key, a value not in canonical form, two members of a oneof, a rule the
//! event breaks, malformed JSON) returns `None`, and the general reading decides and words the
//! answer, so every error and rejection stays as it was. `tests` (and
//! `tests/server_parse.rs`) compare this pass with the general reading byte for byte.
//!
//! [`canonical`]: super::canonical

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use serde::de;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::event::{AcceptedEvent, EventOutcome, IngestContext};
use super::field_table::{FieldInfo, FieldTables, MessageTable, Shape, ValueKind};
use super::fresh_id;
use super::json_text::write_json_string;
use super::schema::Schema;

/// The envelope fields the pass reads after parsing, resolved once.
#[derive(Debug, Clone)]
pub(crate) struct CanonicalPass {
    pub(crate) tables: FieldTables,
    /// Indices of envelope fields into its [`MessageTable::fields`].
    pub(crate) id: usize,
    pub(crate) idempotency_key: usize,
    pub(crate) app_id: usize,
    pub(crate) timestamp_ms: usize,
    /// Ranks of the members the record adds (see [`FieldInfo::rank`]).
    pub(crate) event_type_rank: u32,
    pub(crate) received_ms_rank: u32,
}

/// The names the record adds to the envelope.
pub(crate) const ADDED: [&str; 2] = ["event_type", "received_ms"];

impl CanonicalPass {
    /// The pass over `tables`, or `None` when the envelope lacks a field it reads, or has one
    /// named like a member the record adds (then every event takes the general path).
    pub(crate) fn new(schema: &Schema) -> Option<CanonicalPass> {
        let tables = FieldTables::build(schema, &ADDED);
        let envelope = tables.messages.get(tables.envelope)?;
        if ADDED.iter().any(|name| envelope.field(name).is_some()) {
            return None;
        }
        let index = |name: &str| envelope.field(name).map(|(i, _)| i);
        Some(CanonicalPass {
            id: index("id")?,
            idempotency_key: index("idempotency_key")?,
            app_id: index("app_id")?,
            timestamp_ms: index("timestamp_ms")?,
            event_type_rank: envelope.added_rank(ADDED[0])?,
            received_ms_rank: envelope.added_rank(ADDED[1])?,
            tables,
        })
    }

    /// The accepted event of `raw` if it is a valid canonical envelope; `None` for the general
    /// reading.
    pub(crate) fn accept<'a>(
        &'a self,
        raw: &'a str,
        context: &IngestContext<'_>,
    ) -> Option<EventOutcome> {
        let mut de = serde_json::Deserializer::from_str(raw);
        let seed = MessageSeed {
            tables: &self.tables,
            message: self.tables.envelope,
            check_min_len: true,
        };
        let members = seed.deserialize(&mut de).ok()?;
        de.end().ok()?;
        let mut record = Vec::with_capacity(raw.len() + 128);
        let written = self.finish(members, &mut record, context)?;
        Some(written.into_outcome(&Bytes::from(record)))
    }

    /// Every event of the batch body `json` (`{"events":[...]}`, at most `max_events`)
    /// accepted in one pass over the body, without splitting it into events first; `None`
    /// if any event (or the body) is not for this pass: the batch is then read event by
    /// event. The caller makes sure no event can be over the size limit (the body is not).
    pub(crate) fn accept_batch<'a>(
        &'a self,
        json: &'a str,
        max_events: usize,
        context: &IngestContext<'_>,
    ) -> Option<Vec<EventOutcome>> {
        let mut de = serde_json::Deserializer::from_str(json);
        let outcomes = BatchSeed {
            pass: self,
            max_events,
            body_bytes: json.len(),
            context,
        }
        .deserialize(&mut de)
        .ok()?;
        de.end().ok()?;
        Some(outcomes)
    }

    /// The accepted event of an envelope's kept `members`, if it breaks no rule: its record
    /// appended to `records`, where [`Written::range`] finds it.
    fn finish<'a>(
        &'a self,
        mut members: Vec<Member<'a>>,
        records: &mut Vec<u8>,
        context: &IngestContext<'_>,
    ) -> Option<Written> {
        let envelope = self.tables.messages.get(self.tables.envelope)?;

        let payload = members
            .iter()
            .find_map(|m| envelope.fields.get(m.field).filter(|f| f.in_payload))?;
        let value_of = |field: usize| members.iter().find(|m| m.field == field).map(|m| &m.value);
        if value_of(self.app_id).and_then(Out::as_str) != Some(context.app_id) {
            return None;
        }
        let timestamp_ms = value_of(self.timestamp_ms)
            .and_then(Out::as_i64)
            .unwrap_or_default();
        if timestamp_ms <= 0 {
            return None;
        }
        let id = fill(&mut members, envelope, self.id, || {
            fresh_id::event_id(context.received_ms)
        });
        let idempotency_key = fill(
            &mut members,
            envelope,
            self.idempotency_key,
            fresh_id::idempotency_key,
        );
        insert_ranked(
            &mut members,
            Member {
                name: Cow::Borrowed(ADDED[0]),
                field: usize::MAX,
                rank: self.event_type_rank,
                value: Out::Str(Cow::Borrowed(&payload.name)),
            },
        );
        insert_ranked(
            &mut members,
            Member {
                name: Cow::Borrowed(ADDED[1]),
                field: usize::MAX,
                rank: self.received_ms_rank,
                value: Out::I64(context.received_ms),
            },
        );
        let start = records.len();
        write_members(&members, records);
        Some(Written {
            id: id.unwrap_or_else(|| take_fresh(&mut members, self.id)),
            idempotency_key: idempotency_key
                .unwrap_or_else(|| take_fresh(&mut members, self.idempotency_key)),
            range: start..records.len(),
        })
    }
}

/// An accepted event whose record was written into a buffer shared with other events.
pub(crate) struct Written {
    pub(crate) id: String,
    pub(crate) idempotency_key: String,
    /// Where its record is in the buffer.
    pub(crate) range: Range<usize>,
}

impl Written {
    /// The accepted event, its record a view of `records` (the buffer, frozen).
    pub(crate) fn into_outcome(self, records: &Bytes) -> EventOutcome {
        EventOutcome::Valid(AcceptedEvent {
            id: self.id,
            idempotency_key: self.idempotency_key,
            record: records.slice(self.range),
        })
    }
}

/// The string of `field` if non-empty; else `None`, with `fresh()` stored as its value (taken
/// back by [`take_fresh`] once the record is written, so it is not copied).
fn fill<'a>(
    members: &mut Vec<Member<'a>>,
    envelope: &'a MessageTable,
    field: usize,
    fresh: impl FnOnce() -> String,
) -> Option<String> {
    let at = members.iter().position(|m| m.field == field);
    if let Some(current) = at.and_then(|at| members[at].value.as_str())
        && !current.is_empty()
    {
        return Some(current.to_owned());
    }
    let out = Out::Str(Cow::Owned(fresh()));
    match at {
        Some(at) => members[at].value = out,
        None => {
            let (name, rank) = envelope
                .fields
                .get(field)
                .map_or(("", u32::MAX), |f| (&*f.name, f.rank));
            insert_ranked(
                members,
                Member {
                    name: Cow::Borrowed(name),
                    field,
                    rank,
                    value: out,
                },
            );
        }
    }
    None
}

/// Inserts `member` into `members` (sorted by rank, as [`MessageSeed`] leaves them) at its
/// place, so they stay sorted without sorting them again.
fn insert_ranked<'a>(members: &mut Vec<Member<'a>>, member: Member<'a>) {
    let at = members.partition_point(|m| m.rank < member.rank);
    members.insert(at, member);
}

/// The value [`fill`] made for `field`, moved out of `members`.
fn take_fresh(members: &mut [Member<'_>], field: usize) -> String {
    members
        .iter_mut()
        .find(|m| m.field == field)
        .and_then(|m| match &mut m.value {
            Out::Str(text) => Some(std::mem::take(text).into_owned()),
            _ => None,
        })
        .unwrap_or_default()
}

/// A kept value: canonical, not null, not a dropped default.
#[derive(Debug)]
enum Out<'a> {
    Str(Cow<'a, str>),
    Bool(bool),
    I64(i64),
    U64(u64),
    /// A message's members (sorted by name once read).
    Message(Vec<Member<'a>>),
    /// A map's entries, sorted by key.
    Map(Vec<(Cow<'a, str>, Out<'a>)>),
    List(Vec<Out<'a>>),
}

impl Out<'_> {
    fn as_str(&self) -> Option<&str> {
        match self {
            Out::Str(s) => Some(s),
            _ => None,
        }
    }

    /// As `serde_json::Value::as_i64` reads the number.
    fn as_i64(&self) -> Option<i64> {
        match self {
            Out::I64(n) => Some(*n),
            Out::U64(n) => i64::try_from(*n).ok(),
            _ => None,
        }
    }
}

/// One member of a message object.
#[derive(Debug)]
struct Member<'a> {
    /// As written in the request (a proto field name, maybe with escapes resolved).
    name: Cow<'a, str>,
    /// Index into its message's [`MessageTable::fields`] (`usize::MAX`: added by the pass).
    field: usize,
    /// Its name's place in the message's order ([`FieldInfo::rank`]).
    rank: u32,
    value: Out<'a>,
}

/// Writes `members` as a JSON object, as `serde_json` writes a `Map` (compact).
fn write_members(members: &[Member<'_>], out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, member) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_text(&member.name, out);
        out.push(b':');
        member.value.write(out);
    }
    out.push(b'}');
}

/// A JSON string. A borrowed string is copied as it is: `serde_json` lends only strings that
/// had no escape in the request, and refuses raw control characters in strings, so it holds
/// nothing `serde_json` would escape (`"`, `\`, U+0000 to U+001F); an owned one (it had
/// escapes, or was made here) is escaped as `serde_json` escapes it.
#[allow(clippy::ptr_arg, reason = "which variant it is decides the writing")]
fn write_text(text: &Cow<'_, str>, out: &mut Vec<u8>) {
    match text {
        Cow::Borrowed(plain) => {
            out.push(b'"');
            out.extend_from_slice(plain.as_bytes());
            out.push(b'"');
        }
        Cow::Owned(text) => write_json_string(out, text),
    }
}

impl Out<'_> {
    /// Writes the value as `serde_json` writes the `Value` it stands for.
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Out::Str(text) => write_text(text, out),
            Out::Bool(true) => out.extend_from_slice(b"true"),
            Out::Bool(false) => out.extend_from_slice(b"false"),
            // Writing to a Vec cannot fail.
            Out::I64(n) => {
                let _ = serde_json::to_writer(&mut *out, n);
            }
            Out::U64(n) => {
                let _ = serde_json::to_writer(&mut *out, n);
            }
            Out::Message(members) => write_members(members, out),
            Out::Map(entries) => {
                out.push(b'{');
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_text(key, out);
                    out.push(b':');
                    value.write(out);
                }
                out.push(b'}');
            }
            Out::List(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write(out);
                }
                out.push(b']');
            }
        }
    }
}

/// A batch body: an object whose only member is `events`, read by [`EventsSeed`].
struct BatchSeed<'a, 'c> {
    pass: &'a CanonicalPass,
    max_events: usize,
    body_bytes: usize,
    context: &'c IngestContext<'c>,
}

impl<'a> DeserializeSeed<'a> for BatchSeed<'a, '_> {
    type Value = Vec<EventOutcome>;

    fn deserialize<D: Deserializer<'a>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'a> Visitor<'a> for BatchSeed<'a, '_> {
    type Value = Vec<EventOutcome>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a batch")
    }

    fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut outcomes = None;
        while let Some(key) = map.next_key::<&'a str>()? {
            if key != "events" || outcomes.is_some() {
                return Err(not_canonical());
            }
            outcomes = Some(map.next_value_seed(EventsSeed {
                pass: self.pass,
                max_events: self.max_events,
                body_bytes: self.body_bytes,
                context: self.context,
            })?);
        }
        outcomes.ok_or_else(not_canonical)
    }
}

/// The `events` array, every event accepted by the pass.
struct EventsSeed<'a, 'c> {
    pass: &'a CanonicalPass,
    max_events: usize,
    /// The size of the whole body, from which the records' buffer is sized.
    body_bytes: usize,
    context: &'c IngestContext<'c>,
}

impl<'a> DeserializeSeed<'a> for EventsSeed<'a, '_> {
    type Value = Vec<EventOutcome>;

    fn deserialize<D: Deserializer<'a>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'a> Visitor<'a> for EventsSeed<'a, '_> {
    type Value = Vec<EventOutcome>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of events")
    }

    fn visit_seq<S: SeqAccess<'a>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
        let tables = &self.pass.tables;
        let mut written = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max_events));
        // Every record of the batch in one buffer: one allocation, and the storage gets views
        // of it. A record is its event plus an id, `event_type` and `received_ms` (~100 bytes:
        // 1.5 times a 200-byte event), so twice the body holds them without growing.
        let mut records = Vec::with_capacity(2 * self.body_bytes + 256);
        while let Some(members) = seq.next_element_seed(MessageSeed {
            tables,
            message: tables.envelope,
            check_min_len: true,
        })? {
            if written.len() == self.max_events {
                return Err(not_canonical());
            }
            let event = self
                .pass
                .finish(members, &mut records, self.context)
                .ok_or_else(not_canonical)?;
            written.push(event);
        }
        // The storage keeps the buffer as long as it keeps one of its records, and a storage
        // holding its streams in memory pays for every byte of it (the kernel clearing fresh
        // pages was the largest item of the server's CPU on the memory storage, and this
        // buffer, sized for the worst case, its largest source): the records move to an
        // allocation of their exact size, and the working buffer, freed here, serves the next
        // batch.
        let records = Bytes::copy_from_slice(&records);
        Ok(written
            .into_iter()
            .map(|event| event.into_outcome(&records))
            .collect())
    }
}

/// Why the pass gave up (never shown: the general reading words the answer).
fn not_canonical<E: de::Error>() -> E {
    E::custom("not a canonical valid event")
}

/// A key, borrowed from the request when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// A message object: its kept members sorted by name, after the checks `check_fields` and
/// `is_canonical` make (and, for the envelope and the payload, its `min_len` rules).
struct MessageSeed<'t> {
    tables: &'t FieldTables,
    message: usize,
    check_min_len: bool,
}

impl<'de> DeserializeSeed<'de> for MessageSeed<'_> {
    type Value = Vec<Member<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MessageSeed<'_> {
    type Value = Vec<Member<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a message object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let table = self
            .tables
            .messages
            .get(self.message)
            .ok_or_else(not_canonical)?;
        // Enough for the members of most events and the ones the envelope's record adds.
        let mut members = Vec::with_capacity(table.fields.len().min(12));
        // Fields and oneofs seen, by index: a repeated key is a repeated field (only proto
        // names are accepted), refused like `strict_json` does; larger messages give up.
        let (mut fields_seen, mut oneofs_seen) = (0_u128, 0_u64);
        while let Some(name) = map.next_key_seed(KeySeed)? {
            let (index, field) = table.field(&name).ok_or_else(not_canonical)?;
            let bit = 1_u128.checked_shl(index as u32).ok_or_else(not_canonical)?;
            if fields_seen & bit != 0 {
                return Err(not_canonical());
            }
            fields_seen |= bit;
            let read = map.next_value_seed(FieldSeed {
                tables: self.tables,
                field,
            })?;
            let Some((value, is_default)) = read else {
                continue; // null: neither stored nor a oneof member
            };
            if let Some(oneof) = field.oneof {
                let bit = 1_u64.checked_shl(oneof as u32).ok_or_else(not_canonical)?;
                if oneofs_seen & bit != 0 {
                    return Err(not_canonical());
                }
                oneofs_seen |= bit;
            }
            if is_default && !field.presence {
                continue;
            }
            members.push(Member {
                name,
                field: index,
                rank: field.rank,
                value,
            });
        }
        if self.check_min_len && breaks_min_len(table, &members) {
            return Err(not_canonical());
        }
        members.sort_unstable_by_key(|m| m.rank);
        Ok(members)
    }
}

/// Whether a `min_len` rule of `table` is broken (an absent field has no characters).
fn breaks_min_len(table: &MessageTable, members: &[Member<'_>]) -> bool {
    table.min_len.iter().any(|&(field, min)| {
        let text = members
            .iter()
            .find(|m| m.field == field)
            .and_then(|m| m.value.as_str())
            .unwrap_or_default();
        chars_below(text, min)
    })
}

/// Whether `text` has fewer than `min` characters. A character is 1 to 4 bytes of UTF-8, so a
/// text of at least `4 * min` bytes has enough without counting them (ids, keys and names of
/// a few dozen bytes against rules of a few characters).
pub(crate) fn chars_below(text: &str, min: u64) -> bool {
    let bytes = u64::try_from(text.len()).unwrap_or(u64::MAX);
    if bytes / 4 >= min {
        return false;
    }
    u64::try_from(text.chars().count()).unwrap_or(u64::MAX) < min
}

/// A field's value: `None` for null, else the value and whether it is the field's default.
struct FieldSeed<'t> {
    tables: &'t FieldTables,
    field: &'t FieldInfo,
}

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Option<(Out<'de>, bool)>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> FieldSeed<'_> {
    /// A single value of this field's kind.
    fn single<E: de::Error>(
        &self,
        read: impl FnOnce(&FieldTables, ValueKind) -> Option<(Out<'de>, bool)>,
    ) -> Result<Option<(Out<'de>, bool)>, E> {
        if self.field.shape != Shape::Single {
            return Err(not_canonical());
        }
        read(self.tables, self.field.kind)
            .map(Some)
            .ok_or_else(not_canonical)
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_> {
    type Value = Option<(Out<'de>, bool)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        self.single(|_, kind| boolean(kind, v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.single(|_, kind| signed(kind, v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.single(|_, kind| unsigned(kind, v))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(not_canonical())
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        self.single(|tables, kind| string(tables, kind, Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.single(|tables, kind| string(tables, kind, Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        self.single(|tables, kind| string(tables, kind, Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        if self.field.shape != Shape::List {
            return Err(not_canonical());
        }
        let mut items = Vec::new();
        while let Some((item, _)) = seq.next_element_seed(ItemSeed {
            tables: self.tables,
            kind: self.field.kind,
            check_min_len: false,
        })? {
            items.push(item);
        }
        let empty = items.is_empty();
        Ok(Some((Out::List(items), empty)))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        match (self.field.shape, self.field.kind) {
            (Shape::Map, kind) => {
                let entries = map_entries(self.tables, kind, map)?;
                let empty = entries.is_empty();
                Ok(Some((Out::Map(entries), empty)))
            }
            (Shape::Single, ValueKind::Message(message)) => {
                let members = MessageSeed {
                    tables: self.tables,
                    message,
                    check_min_len: self.field.in_payload,
                }
                .visit_map(map)?;
                Ok(Some((Out::Message(members), false)))
            }
            _ => Err(not_canonical()),
        }
    }
}

/// A map's entries, each value canonical for `kind`, sorted by key; a repeated key gives up.
fn map_entries<'de, A: MapAccess<'de>>(
    tables: &FieldTables,
    kind: ValueKind,
    mut map: A,
) -> Result<Vec<(Cow<'de, str>, Out<'de>)>, A::Error> {
    if matches!(kind, ValueKind::Message(_) | ValueKind::Never) {
        return Err(not_canonical());
    }
    let mut entries = Vec::new();
    while let Some(key) = map.next_key_seed(KeySeed)? {
        let (value, _) = map.next_value_seed(ItemSeed {
            tables,
            kind,
            check_min_len: false,
        })?;
        entries.push((key, value));
    }
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if entries.windows(2).any(|pair| pair[0].0 == pair[1].0) {
        return Err(not_canonical());
    }
    Ok(entries)
}

/// A list item or map value: never null, canonical for `kind`.
struct ItemSeed<'t> {
    tables: &'t FieldTables,
    kind: ValueKind,
    check_min_len: bool,
}

impl<'de> DeserializeSeed<'de> for ItemSeed<'_> {
    type Value = (Out<'de>, bool);

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed<'_> {
    type Value = (Out<'de>, bool);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list item or map value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        boolean(self.kind, v).ok_or_else(not_canonical)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        signed(self.kind, v).ok_or_else(not_canonical)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        unsigned(self.kind, v).ok_or_else(not_canonical)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        string(self.tables, self.kind, Cow::Borrowed(v)).ok_or_else(not_canonical)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        string(self.tables, self.kind, Cow::Owned(v.to_owned())).ok_or_else(not_canonical)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        string(self.tables, self.kind, Cow::Owned(v)).ok_or_else(not_canonical)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let ValueKind::Message(message) = self.kind else {
            return Err(not_canonical());
        };
        let members = MessageSeed {
            tables: self.tables,
            message,
            check_min_len: self.check_min_len,
        }
        .visit_map(map)?;
        Ok((Out::Message(members), false))
    }
}

fn boolean<'de>(kind: ValueKind, v: bool) -> Option<(Out<'de>, bool)> {
    (kind == ValueKind::Bool).then_some((Out::Bool(v), !v))
}

/// A JSON integer read as `i64` (serde_json reads negative integers so), checked as
/// `canonical` checks `Value::as_i64`/`as_u64`.
fn signed<'de>(kind: ValueKind, v: i64) -> Option<(Out<'de>, bool)> {
    fits_signed(kind, v).then_some((Out::I64(v), v == 0))
}

/// Whether the JSON integer `v` (negative integers are read as `i64`) is canonical for `kind`.
pub(crate) fn fits_signed(kind: ValueKind, v: i64) -> bool {
    match kind {
        ValueKind::I32 => i32::try_from(v).is_ok(),
        ValueKind::I64 => true,
        ValueKind::U32 => u32::try_from(v).is_ok(),
        ValueKind::U64 => u64::try_from(v).is_ok(),
        _ => false,
    }
}

/// A JSON integer read as `u64` (non-negative).
fn unsigned<'de>(kind: ValueKind, v: u64) -> Option<(Out<'de>, bool)> {
    fits_unsigned(kind, v).then_some((Out::U64(v), v == 0))
}

/// Whether the non-negative JSON integer `v` is canonical for `kind`.
pub(crate) fn fits_unsigned(kind: ValueKind, v: u64) -> bool {
    match kind {
        ValueKind::I32 => i32::try_from(v).is_ok(),
        ValueKind::I64 => i64::try_from(v).is_ok(),
        ValueKind::U32 => u32::try_from(v).is_ok(),
        ValueKind::U64 => true,
        _ => false,
    }
}

fn string<'de>(
    tables: &FieldTables,
    kind: ValueKind,
    v: Cow<'de, str>,
) -> Option<(Out<'de>, bool)> {
    match kind {
        ValueKind::Str => {
            let empty = v.is_empty();
            Some((Out::Str(v), empty))
        }
        ValueKind::Enum(index) => {
            let number = tables.enums.get(index)?.number(&v)?;
            Some((Out::Str(v), number == 0))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chars_below_counts_characters_not_bytes() {
        for (text, min, below) in [
            ("", 1, true),
            ("", 0, false),
            ("a", 1, false),
            ("a", 2, true),
            ("abcd", 1, false),
            ("abcdefgh", 3, false),
            ("ab", 3, true),
            // 6 bytes, 2 characters: the byte length alone would say enough.
            ("字字", 3, true),
            ("字字", 2, false),
            // 8 bytes of 4-byte characters: exactly 2.
            ("😀😀", 2, false),
            ("😀😀", 3, true),
        ] {
            assert_eq!(chars_below(text, min), below, "{text:?} against {min}");
        }
    }
    use crate::server::envelope;
    use crate::server::envelope::tests::{CANONICAL_EVENTS, without_fresh};
    use crate::server::strict_json;

    const CONTEXT: IngestContext<'static> = IngestContext {
        app_id: "app",
        received_ms: 1_770_000_000_000,
    };

    fn pass(schema: &Schema) -> CanonicalPass {
        CanonicalPass::new(schema).expect("the schema allows the pass")
    }

    /// The general reading's outcome of `text`, as `EventParser` had it before the pass.
    fn general(schema: &Schema, text: &str) -> Result<EventOutcome, String> {
        let value = strict_json::parse(text, "e").map_err(|e| e.message)?;
        envelope::parse(schema, value, "e", &CONTEXT).map_err(|v| format!("{v:?}"))
    }

    /// Valid canonical events beyond `envelope`'s: keys in any order, escapes in keys and
    /// strings, explicit nulls, empty lists, map keys to sort.
    const MORE_EVENTS: [&str; 3] = [
        r#"{"idempotency_key":"k5","app_id":"app","device_id":"d","timestamp_ms":1,"button_tap":{"button_id":"b"},"id":"i5"}"#,
        r#" {"app\u005fid":"app","id":"i6","idempotency_key":"k\"6","device_id":"d\u0001\u00e9","timestamp_ms":1,"purchase_complete":{"order_id":"o","items":[]},"correlation_id":null} "#,
        r#"{"id":"i7","idempotency_key":"k7","app_id":"app","device_id":"d","timestamp_ms":2,"custom_event":{"event_name":"x","string_params":{"z":"1","\u0061":"2","b\n":"3"}}}"#,
    ];

    #[test]
    fn valid_canonical_events_store_the_general_readings_bytes() {
        let schema = Schema::load().expect("schema");
        let pass = pass(&schema);
        let mut valid = 0;
        for text in CANONICAL_EVENTS.into_iter().chain(MORE_EVENTS) {
            let general = general(&schema, text).expect("general");
            let fast = pass.accept(text, &CONTEXT);
            let EventOutcome::Valid(g) = &general else {
                // A rejection is the general reading's to word.
                assert_eq!(fast, None, "{text}");
                continue;
            };
            let Some(EventOutcome::Valid(f)) = &fast else {
                panic!("pass: {text}: {fast:?}");
            };
            assert_eq!(
                String::from_utf8_lossy(&f.record),
                String::from_utf8_lossy(&g.record),
                "{text}"
            );
            assert_eq!(f, g, "{text}");
            valid += 1;
        }
        assert_eq!(valid, 6);
    }

    #[test]
    fn fresh_ids_and_keys_are_filled_like_the_general_reading() {
        let schema = Schema::load().expect("schema");
        let text = r#"{"id":"","app_id":"app","device_id":"d","timestamp_ms":3,"button_tap":{"button_id":"b"}}"#;
        let (Some(EventOutcome::Valid(fast)), Ok(EventOutcome::Valid(general))) =
            (pass(&schema).accept(text, &CONTEXT), general(&schema, text))
        else {
            panic!("both valid");
        };
        assert!(!fast.id.is_empty() && !fast.idempotency_key.is_empty());
        assert_eq!(without_fresh(&fast), without_fresh(&general));
    }

    #[test]
    fn a_batch_of_canonical_events_is_read_in_one_pass_or_not_at_all() {
        let schema = Schema::load().expect("schema");
        let pass = pass(&schema);
        let valid: Vec<&str> = CANONICAL_EVENTS
            .into_iter()
            .chain(MORE_EVENTS)
            .filter(|text| pass.accept(text, &CONTEXT).is_some())
            .collect();
        assert_eq!(valid.len(), 6);
        let body = |events: &[&str]| format!(r#" {{ "events" : [ {} ] }} "#, events.join(" , "));
        let one_by_one: Vec<EventOutcome> = valid
            .iter()
            .map(|text| pass.accept(text, &CONTEXT).expect("valid"))
            .collect();
        assert_eq!(
            pass.accept_batch(&body(&valid), 6, &CONTEXT),
            Some(one_by_one)
        );
        // More than the limit, another member, an event the pass leaves: all or nothing.
        assert_eq!(pass.accept_batch(&body(&valid), 5, &CONTEXT), None);
        let with_more = format!(r#"{{"events":[{}],"x":1}}"#, valid[0]);
        assert_eq!(pass.accept_batch(&with_more, 6, &CONTEXT), None);
        let twice = format!(r#"{{"events":[{0}],"events":[{0}]}}"#, valid[0]);
        assert_eq!(pass.accept_batch(&twice, 6, &CONTEXT), None);
        for other in CANONICAL_EVENTS.into_iter().filter(|t| !valid.contains(t)) {
            let mixed = [valid[0], other, valid[1]];
            assert_eq!(
                pass.accept_batch(&body(&mixed), 6, &CONTEXT),
                None,
                "{other}"
            );
        }
        assert_eq!(
            pass.accept_batch(r#"{"events":[]}"#, 6, &CONTEXT),
            Some(Vec::new())
        );
        assert_eq!(pass.accept_batch(r#"{"events":{}}"#, 6, &CONTEXT), None);
    }

    #[test]
    fn what_is_invalid_or_not_canonical_is_left_to_the_general_reading() {
        let schema = Schema::load().expect("schema");
        let pass = pass(&schema);
        let ok = r#""app_id":"app","device_id":"d","timestamp_ms":1"#;
        for text in [
            // Rejections: the general reading words them.
            format!(r#"{{{ok},"button_tap":{{}}}}"#),
            r#"{"app_id":"app","device_id":"","timestamp_ms":1,"button_tap":{}}"#.to_owned(),
            r#"{"app_id":"other","device_id":"d","timestamp_ms":1,"button_tap":{"button_id":"b"}}"#
                .to_owned(),
            format!(r#"{{{ok},"button_tap":{{"button_id":""}}}}"#),
            r#"{"app_id":"app","device_id":"d","timestamp_ms":-1,"button_tap":{"button_id":"b"}}"#
                .to_owned(),
            r#"{"app_id":"app","device_id":"d","timestamp_ms":0,"button_tap":{"button_id":"b"}}"#
                .to_owned(),
            format!("{{{ok}}}"),
            format!(r#"{{{ok},"custom_event":{{"event_name":""}}}}"#),
            // Errors: duplicates, unknown fields, two payloads, malformed JSON.
            format!(r#"{{{ok},"app_id":"app","button_tap":{{"button_id":"b"}}}}"#),
            format!(r#"{{{ok},"device_id":null,"button_tap":{{"button_id":"b"}}}}"#),
            format!(
                r#"{{{ok},"custom_event":{{"event_name":"x","string_params":{{"a":"1","a":"2"}}}}}}"#
            ),
            format!(r#"{{{ok},"nope":1,"button_tap":{{"button_id":"b"}}}}"#),
            format!(
                r#"{{{ok},"button_tap":{{"button_id":"b"}},"screen_view":{{"screen_name":"s"}}}}"#
            ),
            format!(r#"{{{ok},"button_tap":{{"button_id":"b"}}"#),
            format!(r#"{{{ok},"button_tap":{{"button_id":"b"}}}} x"#),
            r#"{"event_type":"x","app_id":"app"}"#.to_owned(),
            "[]".to_owned(),
            // A raw control character in a string is malformed JSON (so a borrowed string
            // never needs escaping).
            format!(
                "{{{ok},\"correlation_id\":\"a\u{1}b\",\"button_tap\":{{\"button_id\":\"b\"}}}}"
            ),
            // Not canonical: JSON names, int64 as a string, enum numbers, floats, wrong types.
            r#"{"appId":"app","device_id":"d","timestamp_ms":1,"button_tap":{"button_id":"b"}}"#
                .to_owned(),
            r#"{"app_id":"app","device_id":"d","timestamp_ms":"1","button_tap":{"button_id":"b"}}"#
                .to_owned(),
            r#"{"app_id":"app","device_id":"d","timestamp_ms":1.0,"button_tap":{"button_id":"b"}}"#
                .to_owned(),
            format!(
                r#"{{{ok},"device_context":{{"platform":1}},"button_tap":{{"button_id":"b"}}}}"#
            ),
            format!(
                r#"{{{ok},"device_context":{{"screen_width":2147483648}},"button_tap":{{"button_id":"b"}}}}"#
            ),
            format!(r#"{{{ok},"device_id":7,"button_tap":{{"button_id":"b"}}}}"#),
            format!(r#"{{{ok},"custom_event":{{"event_name":"x","string_params":{{"p":1}}}}}}"#),
            format!(r#"{{{ok},"custom_event":{{"event_name":"x","float_params":{{"x":1.5}}}}}}"#),
            format!(r#"{{{ok},"custom_event":[]}}"#),
        ] {
            assert_eq!(pass.accept(&text, &CONTEXT), None, "{text}");
        }
    }
}
