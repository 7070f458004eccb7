//! The common case of [`CanonicalPass`] read straight from the request's bytes: a batch (or
//! one event) of valid canonical envelopes whose strings have no escapes and whose nested
//! values are already in the record's form, turned into records without `serde_json`.
//!
//! Why: the canonical pass drives `serde_json`'s deserializer through visitors, builds a
//! `Member` per key and an `Out` tree per value (a `Vec` per nested object), then writes them
//! out again; for the bench's 200 B events that was ~10k instructions per event, most of the
//! server's CPU beyond the storage's. Here one scan over the bytes checks every value against
//! the [`FieldTables`] as the canonical pass does, and the record is written by copying each
//! envelope member's value as it stands in the request: a string without escapes, an integer,
//! a boolean, and a nested object or array that is already compact, in sorted key order and
//! without a member the record would drop (null or a default) reads exactly as `serde_json`
//! writes it. Only the envelope's own members are reordered, and the record's added members
//! (`event_type`, `received_ms`, fresh `id` and `idempotency_key`) are inserted at their place.
//!
//! It answers only when it is sure the canonical pass answers the same: anything else (an
//! escape, whitespace or a dropped member inside a nested value, keys out of order there, any
//! invalid, non-canonical or rejected event) returns `None`, and the caller asks
//! [`CanonicalPass`], which gives up to the general reading in turn; so every error message
//! and per-event outcome stays as it was. `tests` compare the two on generated inputs.

use std::ops::Range;

use bytes::Bytes;

use super::canonical_pass::{
    ADDED, CanonicalPass, Written, chars_below, fits_signed, fits_unsigned,
};
use super::event::{EventOutcome, IngestContext};
use super::field_table::{FieldInfo, FieldTables, MessageTable, Shape, ValueKind};
use super::fresh_id;
use super::json_text::plain_len;

/// Nested messages deeper than this give up (`serde_json`'s limit is 128 levels of arrays and
/// objects, of which a message takes at most two; this stays well within it).
const MAX_DEPTH: usize = 32;

/// [`CanonicalPass::accept_batch`] of a batch this reader is sure of, `None` otherwise. The
/// caller makes sure no event can be over the size limit (the body is not).
pub(crate) fn accept_batch(
    pass: &CanonicalPass,
    json: &str,
    max_events: usize,
    context: &IngestContext<'_>,
) -> Option<Vec<EventOutcome>> {
    let mut reader = Reader::new(json);
    reader.skip_ws();
    reader.eat(b'{')?;
    reader.skip_ws();
    reader.eat_literal(b"\"events\"")?;
    reader.skip_ws();
    reader.eat(b':')?;
    reader.skip_ws();
    reader.eat(b'[')?;
    reader.skip_ws();
    let mut events = Vec::new();
    // As in the canonical pass: one working buffer for every record of the batch, sized for
    // the worst case, then moved to an allocation of the exact size the storage keeps.
    let mut records = Vec::with_capacity(2 * json.len() + 256);
    let mut kept = Vec::with_capacity(16);
    let received = received_ms_json(context);
    if reader.peek() == Some(b']') {
        reader.at += 1;
    } else {
        loop {
            if events.len() == max_events {
                return None;
            }
            events.push(read_event(
                pass,
                &mut reader,
                &mut kept,
                &mut records,
                context,
                &received,
            )?);
            reader.skip_ws();
            match reader.next()? {
                b',' => reader.skip_ws(),
                b']' => break,
                _ => return None,
            }
        }
    }
    reader.skip_ws();
    reader.eat(b'}')?;
    reader.skip_ws();
    reader.at_end()?;
    let records = Bytes::copy_from_slice(&records);
    Some(
        events
            .into_iter()
            .map(|event| event.into_outcome(&records))
            .collect(),
    )
}

/// [`CanonicalPass::accept`] of one event this reader is sure of, `None` otherwise.
pub(crate) fn accept(
    pass: &CanonicalPass,
    raw: &str,
    context: &IngestContext<'_>,
) -> Option<EventOutcome> {
    let mut reader = Reader::new(raw);
    reader.skip_ws();
    let mut record = Vec::with_capacity(raw.len() + 128);
    let received = received_ms_json(context);
    let written = read_event(
        pass,
        &mut reader,
        &mut Vec::new(),
        &mut record,
        context,
        &received,
    )?;
    reader.skip_ws();
    reader.at_end()?;
    Some(written.into_outcome(&Bytes::from(record)))
}

/// The request's `received_ms` as the record writes it (as `serde_json` writes an `i64`):
/// the same for every event of the request, so written once.
fn received_ms_json(context: &IngestContext<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(20);
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, &context.received_ms);
    out
}

/// An envelope member the record keeps.
struct Kept {
    /// Index into the envelope's [`MessageTable::fields`].
    field: usize,
    rank: u32,
    /// Where its value is in the request (copied as it is into the record).
    value: Range<usize>,
    /// Where its key starts, if the key is followed by `:` and the value with no whitespace:
    /// then key and value are copied in one go.
    compact_from: Option<usize>,
    read: Read,
}

/// What a value is, beyond its bytes.
#[derive(Clone, Copy)]
struct Read {
    /// The field's default (empty string, 0, false, first enum number, empty list or map).
    default: bool,
    /// A string's text (between its quotes); `None` for any other value.
    text: Option<(usize, usize)>,
    /// An integer, as `serde_json::Value::as_i64` reads it.
    int: Option<i64>,
}

impl Read {
    const OTHER: Read = Read {
        default: false,
        text: None,
        int: None,
    };
}

/// Reads the envelope at the reader's place (after any whitespace) and writes its record to
/// `records`, if it is valid and canonical and the reader is sure of it. `received` is
/// [`received_ms_json`] of `context`.
fn read_event(
    pass: &CanonicalPass,
    reader: &mut Reader<'_>,
    kept: &mut Vec<Kept>,
    records: &mut Vec<u8>,
    context: &IngestContext<'_>,
    received: &[u8],
) -> Option<Written> {
    let tables = &pass.tables;
    let envelope = tables.messages.get(tables.envelope)?;
    kept.clear();
    let mut rules = MinLen::new(envelope)?;
    let (mut seen, mut oneofs) = (Bits::default(), Bits::default());
    reader.eat(b'{')?;
    reader.skip_ws();
    if reader.peek() == Some(b'}') {
        reader.at += 1;
    } else {
        loop {
            let key_start = reader.at;
            let key = reader.string()?;
            let key_end = reader.at;
            let (index, field) = envelope.field(reader.text(key)?)?;
            // A repeated key is a repeated field (only proto names are accepted).
            seen.insert(index)?;
            reader.skip_ws();
            reader.eat(b':')?;
            reader.skip_ws();
            let start = reader.at;
            // Null: neither stored nor a oneof member.
            if let Some(read) = reader.value(tables, field, 0)? {
                if let Some(oneof) = field.oneof {
                    oneofs.insert(oneof)?;
                }
                // A default is dropped unless the field has presence.
                if !read.default || field.presence {
                    rules.check(index, reader.text_of(read))?;
                    kept.push(Kept {
                        field: index,
                        rank: field.rank,
                        value: start..reader.at,
                        compact_from: (start == key_end + 1).then_some(key_start),
                        read,
                    });
                }
            }
            reader.skip_ws();
            match reader.next()? {
                b',' => reader.skip_ws(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    rules.finish()?;
    kept.sort_unstable_by_key(|k| k.rank);
    write_record(pass, envelope, reader, kept, records, context, received)
}

/// The record of an envelope's `kept` members (sorted by rank), if it breaks no rule the
/// canonical pass leaves to the general reading; as [`CanonicalPass`]'s `finish`.
fn write_record(
    pass: &CanonicalPass,
    envelope: &MessageTable,
    reader: &Reader<'_>,
    kept: &[Kept],
    records: &mut Vec<u8>,
    context: &IngestContext<'_>,
    received: &[u8],
) -> Option<Written> {
    let payload = kept
        .iter()
        .find_map(|k| envelope.fields.get(k.field).filter(|f| f.in_payload))?;
    let member = |field: usize| kept.iter().find(|k| k.field == field);
    let app_id = member(pass.app_id).and_then(|k| reader.text_of(k.read));
    if app_id != Some(context.app_id) {
        return None;
    }
    let timestamp_ms = member(pass.timestamp_ms)
        .and_then(|k| k.read.int)
        .unwrap_or_default();
    if timestamp_ms <= 0 {
        return None;
    }
    // The client's id and key if non-empty, else fresh ones written in their place.
    let given = |field: usize| {
        member(field)
            .and_then(|k| reader.text_of(k.read))
            .filter(|text| !text.is_empty())
    };
    let id = given(pass.id);
    let idempotency_key = given(pass.idempotency_key);
    let fresh_id = id
        .is_none()
        .then(|| fresh_id::event_id(context.received_ms));
    let fresh_key = idempotency_key.is_none().then(fresh_id::idempotency_key);

    // The members the record adds, by rank, merged with the kept ones below.
    let mut added: [(u32, Added<'_>); 4] = [
        (pass.event_type_rank, Added::EventType(&payload.name)),
        (pass.received_ms_rank, Added::ReceivedMs),
        (
            rank_of(envelope, pass.id),
            Added::Fresh(pass.id, fresh_id.as_deref()),
        ),
        (
            rank_of(envelope, pass.idempotency_key),
            Added::Fresh(pass.idempotency_key, fresh_key.as_deref()),
        ),
    ];
    added.sort_unstable_by_key(|(rank, _)| *rank);
    let start = records.len();
    records.push(b'{');
    let mut first = true;
    let mut next_kept = kept.iter().peekable();
    for (rank, add) in &added {
        while let Some(k) = next_kept.next_if(|k| k.rank < *rank) {
            write_kept(envelope, reader, k, records, &mut first)?;
        }
        match add {
            Added::EventType(name) => {
                write_name(ADDED[0], records, &mut first);
                write_plain(name, records);
            }
            Added::ReceivedMs => {
                write_name(ADDED[1], records, &mut first);
                records.extend_from_slice(received);
            }
            Added::Fresh(field, Some(fresh)) => {
                // Replaces the client's empty value, if it was kept.
                next_kept.next_if(|k| k.field == *field);
                write_name(&envelope.fields.get(*field)?.name, records, &mut first);
                // A fresh id or key is a UUID's text: hex digits and hyphens, nothing to
                // escape.
                write_plain(fresh, records);
            }
            Added::Fresh(_, None) => {}
        }
    }
    for k in next_kept {
        write_kept(envelope, reader, k, records, &mut first)?;
    }
    records.push(b'}');
    // A fresh value is moved, not copied again.
    Some(Written {
        id: id.map(str::to_owned).or(fresh_id)?,
        idempotency_key: idempotency_key.map(str::to_owned).or(fresh_key)?,
        range: start..records.len(),
    })
}

/// A member the record adds to the envelope.
enum Added<'a> {
    /// `event_type`: the payload's field name.
    EventType(&'a str),
    /// `received_ms`: the request's arrival.
    ReceivedMs,
    /// A fresh value of the field (`None`: the client gave one).
    Fresh(usize, Option<&'a str>),
}

fn rank_of(envelope: &MessageTable, field: usize) -> u32 {
    envelope.fields.get(field).map_or(u32::MAX, |f| f.rank)
}

/// `"name":`, after a comma unless it is the object's first member.
fn write_name(name: &str, out: &mut Vec<u8>, first: &mut bool) {
    if !std::mem::take(first) {
        out.push(b',');
    }
    write_plain(name, out);
    out.push(b':');
}

/// A string that needs no escape (a proto name), between quotes.
fn write_plain(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

/// A kept member: its proto name (the key it was found by) and its value's bytes.
fn write_kept(
    envelope: &MessageTable,
    reader: &Reader<'_>,
    kept: &Kept,
    out: &mut Vec<u8>,
    first: &mut bool,
) -> Option<()> {
    if let Some(from) = kept.compact_from {
        // The key is the proto name as it is written (no escapes), so `"key":value` as it
        // stands is what `serde_json` writes.
        if !std::mem::take(first) {
            out.push(b',');
        }
        out.extend_from_slice(reader.bytes.get(from..kept.value.end)?);
    } else {
        write_name(&envelope.fields.get(kept.field)?.name, out, first);
        out.extend_from_slice(reader.bytes.get(kept.value.clone())?);
    }
    Some(())
}

/// Indices seen, refusing one seen before; like the canonical pass, at most 128.
#[derive(Default)]
struct Bits(u128);

impl Bits {
    fn insert(&mut self, index: usize) -> Option<()> {
        let bit = 1_u128.checked_shl(u32::try_from(index).ok()?)?;
        if self.0 & bit != 0 {
            return None;
        }
        self.0 |= bit;
        Some(())
    }
}

/// A message's `min_len` rules checked as its members are kept (an absent field is empty).
struct MinLen<'t> {
    rules: &'t [(usize, u64)],
    /// The rules whose field was kept.
    met: u64,
}

impl<'t> MinLen<'t> {
    fn new(table: &'t MessageTable) -> Option<MinLen<'t>> {
        // More rules than bits: give up.
        (table.min_len.len() <= 64).then_some(MinLen {
            rules: &table.min_len,
            met: 0,
        })
    }

    /// `None` if the kept member `field` with `text` (empty if not a string) breaks a rule.
    fn check(&mut self, field: usize, text: Option<&str>) -> Option<()> {
        for (i, &(rule_field, min)) in self.rules.iter().enumerate() {
            if rule_field == field {
                if chars_below(text.unwrap_or_default(), min) {
                    return None;
                }
                self.met |= 1 << i;
            }
        }
        Some(())
    }

    /// `None` if a rule's field is absent and the rule asks for characters.
    fn finish(&self) -> Option<()> {
        let broken = self
            .rules
            .iter()
            .enumerate()
            .any(|(i, &(_, min))| self.met & (1 << i) == 0 && chars_below("", min));
        (!broken).then_some(())
    }
}

/// A JSON integer: negative ones as `serde_json` reads them into `i64`, the others `u64`.
#[derive(Clone, Copy)]
enum Integer {
    Negative(i64),
    NonNegative(u64),
}

/// A cursor over the request's bytes.
struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(text: &'a str) -> Reader<'a> {
        Reader {
            text,
            bytes: text.as_bytes(),
            at: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    fn eat_literal(&mut self, literal: &[u8]) -> Option<()> {
        let rest = self.bytes.get(self.at..)?;
        if !rest.starts_with(literal) {
            return None;
        }
        self.at += literal.len();
        Some(())
    }

    /// JSON's whitespace, as `serde_json` skips it.
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn at_end(&self) -> Option<()> {
        (self.at == self.bytes.len()).then_some(())
    }

    fn text(&self, (start, end): (usize, usize)) -> Option<&'a str> {
        self.text.get(start..end)
    }

    fn text_of(&self, read: Read) -> Option<&'a str> {
        read.text.and_then(|range| self.text(range))
    }

    /// A string without escapes or control characters: where its text starts and ends.
    fn string(&mut self) -> Option<(usize, usize)> {
        self.eat(b'"')?;
        let start = self.at;
        let end = start + plain_len(self.bytes.get(start..)?);
        // Anything but the closing quote (an escape, a control character, the end) is for
        // `serde_json` to read.
        if self.bytes.get(end) != Some(&b'"') {
            return None;
        }
        self.at = end + 1;
        Some((start, end))
    }

    /// A JSON integer, as `serde_json` reads it without going to `f64`; floats, `-0` and
    /// integers beyond `u64` (or below `i64::MIN`), which it reads as `f64`, give up.
    fn integer(&mut self) -> Option<Integer> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        let first = self.next()?;
        if !first.is_ascii_digit() {
            return None;
        }
        let mut value = u64::from(first - b'0');
        if value == 0 {
            // One leading zero only (more is invalid JSON).
            if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                return None;
            }
        } else {
            while let Some(digit) = self.peek().filter(u8::is_ascii_digit) {
                value = value
                    .checked_mul(10)?
                    .checked_add(u64::from(digit - b'0'))?;
                self.at += 1;
            }
        }
        if let Some(b'.' | b'e' | b'E') = self.peek() {
            return None;
        }
        if negative {
            if value == 0 {
                return None;
            }
            0_i64.checked_sub_unsigned(value).map(Integer::Negative)
        } else {
            Some(Integer::NonNegative(value))
        }
    }

    /// A field's value: `None` to give up, `Some(None)` for null.
    fn value(
        &mut self,
        tables: &FieldTables,
        field: &FieldInfo,
        depth: usize,
    ) -> Option<Option<Read>> {
        let read = match (self.peek()?, field.shape) {
            (b'n', _) => {
                self.eat_literal(b"null")?;
                return Some(None);
            }
            (b'[', Shape::List) => Read {
                default: self.list(tables, field.kind, depth)?,
                ..Read::OTHER
            },
            (b'{', Shape::Map) => Read {
                default: self.map(tables, field.kind, depth)?,
                ..Read::OTHER
            },
            (_, Shape::Single) => self.item(tables, field.kind, field.in_payload, depth)?,
            _ => return None,
        };
        Some(Some(read))
    }

    /// A single value of `kind` (a field's, a list item or a map value); never null.
    fn item(
        &mut self,
        tables: &FieldTables,
        kind: ValueKind,
        check_min_len: bool,
        depth: usize,
    ) -> Option<Read> {
        match self.peek()? {
            b'"' => {
                let range = self.string()?;
                let text = self.text(range)?;
                let default = match kind {
                    ValueKind::Str => text.is_empty(),
                    ValueKind::Enum(index) => tables.enums.get(index)?.number(text)? == 0,
                    _ => return None,
                };
                Some(Read {
                    default,
                    text: Some(range),
                    int: None,
                })
            }
            b't' | b'f' if kind == ValueKind::Bool => {
                let value = self.peek() == Some(b't');
                self.eat_literal(if value { b"true" } else { b"false" })?;
                Some(Read {
                    default: !value,
                    ..Read::OTHER
                })
            }
            b'-' | b'0'..=b'9' => {
                let (fits, zero, int) = match self.integer()? {
                    Integer::Negative(v) => (fits_signed(kind, v), false, Some(v)),
                    Integer::NonNegative(v) => {
                        (fits_unsigned(kind, v), v == 0, i64::try_from(v).ok())
                    }
                };
                fits.then_some(Read {
                    default: zero,
                    text: None,
                    int,
                })
            }
            b'{' => {
                let ValueKind::Message(message) = kind else {
                    return None;
                };
                self.message(tables, message, check_min_len, depth + 1)?;
                Some(Read::OTHER)
            }
            _ => None,
        }
    }

    /// A nested message that is already in the record's form: compact, its members in sorted
    /// order, none the record would drop (a null or a default without presence); checked
    /// as the canonical pass checks it.
    fn message(
        &mut self,
        tables: &FieldTables,
        message: usize,
        check_min_len: bool,
        depth: usize,
    ) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        let table = tables.messages.get(message)?;
        let mut rules = MinLen::new(table)?;
        let mut oneofs = Bits::default();
        self.eat(b'{')?;
        if self.peek() == Some(b'}') {
            self.at += 1;
        } else {
            let mut last_rank = None;
            loop {
                let key = self.string()?;
                let (index, field) = table.field(self.text(key)?)?;
                // The canonical pass gives up on messages of more fields.
                if index >= 128 {
                    return None;
                }
                // Out of order (or repeated): the record would reorder it.
                if last_rank.is_some_and(|last| field.rank <= last) {
                    return None;
                }
                last_rank = Some(field.rank);
                self.eat(b':')?;
                // A null is dropped from the record.
                let read = self.value(tables, field, depth)??;
                if let Some(oneof) = field.oneof {
                    oneofs.insert(oneof)?;
                }
                if read.default && !field.presence {
                    return None;
                }
                if check_min_len {
                    rules.check(index, self.text_of(read))?;
                }
                match self.next()? {
                    b',' => {}
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        if check_min_len {
            rules.finish()?;
        }
        Some(())
    }

    /// A compact list of `kind`: whether it is empty.
    fn list(&mut self, tables: &FieldTables, kind: ValueKind, depth: usize) -> Option<bool> {
        self.eat(b'[')?;
        if self.peek() == Some(b']') {
            self.at += 1;
            return Some(true);
        }
        loop {
            self.item(tables, kind, false, depth)?;
            match self.next()? {
                b',' => {}
                b']' => return Some(false),
                _ => return None,
            }
        }
    }

    /// A compact map of `kind` values, its keys in sorted order: whether it is empty.
    fn map(&mut self, tables: &FieldTables, kind: ValueKind, depth: usize) -> Option<bool> {
        if matches!(kind, ValueKind::Message(_) | ValueKind::Never) {
            return None;
        }
        self.eat(b'{')?;
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Some(true);
        }
        let mut last: Option<&str> = None;
        loop {
            let key = self.string()?;
            let key = self.text(key)?;
            // Out of order (the record sorts them) or repeated (refused).
            if last.is_some_and(|last| key <= last) {
                return None;
            }
            last = Some(key);
            self.eat(b':')?;
            self.item(tables, kind, false, depth)?;
            match self.next()? {
                b',' => {}
                b'}' => return Some(false),
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::server::envelope::tests::CANONICAL_EVENTS;
    use crate::server::schema::Schema;

    const CONTEXT: IngestContext<'static> = IngestContext {
        app_id: "app",
        received_ms: 1_770_000_000_000,
    };

    fn pass() -> CanonicalPass {
        CanonicalPass::new(&Schema::load().expect("schema")).expect("the schema allows the pass")
    }

    /// Asserts that the reader's outcome is the canonical pass's: the same record bytes, id
    /// and key, except that a fresh id or key (one the event did not give) is random on each
    /// side, so the reader's is replaced by the pass's before comparing. An id or key that
    /// appears in the event must be the same on both sides.
    fn assert_same(lean: &EventOutcome, serde: &EventOutcome, input: &str) {
        let (EventOutcome::Valid(lean), EventOutcome::Valid(serde)) = (lean, serde) else {
            // The reader answers only for valid events.
            panic!("reader {lean:?}, pass {serde:?}: {input}");
        };
        let mut record = String::from_utf8(lean.record.to_vec()).expect("UTF-8 record");
        for (ours, theirs) in [
            (&lean.id, &serde.id),
            (&lean.idempotency_key, &serde.idempotency_key),
        ] {
            if ours != theirs {
                // Only values neither side took from the event may differ: an id or key the
                // event gave must come out the same on both sides.
                assert!(
                    !input.contains(&format!("\"{theirs}\""))
                        && !input.contains(&format!("\"{ours}\"")),
                    "an id or key of the event differs: reader {ours}, pass {theirs}: {input}"
                );
                assert!(
                    ours.len() == 36 && theirs.len() == 36,
                    "{ours} / {theirs}: {input}"
                );
                record = record.replace(&format!("\"{ours}\""), &format!("\"{theirs}\""));
            }
        }
        assert_eq!(
            record,
            String::from_utf8_lossy(&serde.record),
            "record of {input}"
        );
    }

    /// The bench's event and the canonical events the envelope tests use: the reader takes
    /// the common shapes itself (else the fast path would silently never run).
    #[test]
    fn the_common_shapes_are_read_here_and_match_the_pass() {
        let pass = pass();
        let bench = r#"{"app_id":"app","device_id":"d","timestamp_ms":1764500000000,"idempotency_key":"0000002a-0000-4000-8000-000000000007","custom_event":{"event_name":"bench","string_params":{"p":"xxxxxxxxxxxxxxxxxxxxxxxx"}}}"#;
        // What the Rust SDK writes (`sdk::event`, payload members in name order).
        let sdk = [
            r#"{"app_id":"app","device_id":"host-1","timestamp_ms":1,"device_context":{"os_version":"linux/x86_64","sdk_version":"courier-ingest-rust/0.1.0"},"idempotency_key":"k1","custom_event":{"bool_params":{"trial":true},"event_name":"signup","int_params":{"seats":5},"string_params":{"plan":"pro","user_id":"u1"}}}"#,
            r#"{"id":"e-9","app_id":"app","device_id":"host-1","timestamp_ms":1,"device_context":{"os_version":"linux/x86_64","sdk_version":"courier-ingest-rust/0.1.0"},"idempotency_key":"k2","user_login":{"method":"email","user_id":"u1"}}"#,
        ];
        let mut read_here = 0;
        for text in CANONICAL_EVENTS.into_iter().chain([bench]).chain(sdk) {
            let serde = pass.accept(text, &CONTEXT);
            match (accept(&pass, text, &CONTEXT), &serde) {
                (Some(lean), Some(serde)) => {
                    assert_same(&lean, serde, text);
                    read_here += 1;
                }
                (None, _) => {}
                (Some(lean), None) => panic!("only the reader accepts {text}: {lean:?}"),
            }
        }
        // Of CANONICAL_EVENTS, none: the valid ones have an escape or a nested default, which
        // the pass drops from the record; so the bench's event and the SDK's.
        assert_eq!(read_here, 3);
        let body = format!(r#"{{"events":[{bench},{bench}]}}"#);
        assert_eq!(
            accept_batch(&pass, &body, 2, &CONTEXT).map(|o| o.len()),
            Some(2)
        );
    }

    /// What the reader leaves to the pass although the pass accepts it: escapes, whitespace,
    /// keys out of order or a dropped member inside a nested value.
    #[test]
    fn what_the_pass_would_rewrite_is_left_to_it() {
        let pass = pass();
        let head = r#""app_id":"app","device_id":"d","timestamp_ms":1"#;
        for text in [
            format!(r#"{{{head},"correlation_id":"a\"b","button_tap":{{"button_id":"b"}}}}"#),
            r#"{"app\u005fid":"app","device_id":"d","timestamp_ms":1,"button_tap":{"button_id":"b"}}"#
                .to_owned(),
            format!(r#"{{{head},"button_tap":{{ "button_id":"b"}}}}"#),
            format!(r#"{{{head},"button_tap":{{"screen_name":"s","button_id":"b"}}}}"#),
            format!(r#"{{{head},"button_tap":{{"button_id":"b","button_text":""}}}}"#),
            format!(r#"{{{head},"button_tap":{{"button_id":"b","button_text":null}}}}"#),
            format!(
                r#"{{{head},"custom_event":{{"event_name":"x","string_params":{{"b":"1","a":"2"}}}}}}"#
            ),
            format!(r#"{{{head},"custom_event":{{"event_name":"x","string_params":{{}}}}}}"#),
        ] {
            assert!(pass.accept(&text, &CONTEXT).is_some(), "pass: {text}");
            assert_eq!(accept(&pass, &text, &CONTEXT), None, "{text}");
        }
    }

    /// Random JSON around the envelope's schema: valid shapes and every way to leave them.
    struct Gen {
        rng: StdRng,
        tables: FieldTables,
    }

    const STRINGS: [&str; 14] = [
        "",
        "x",
        "app",
        "bench",
        "é字😀",
        "PLATFORM_IOS",
        "PLATFORM_UNSPECIFIED",
        "NETWORK_TYPE_WIFI",
        "SWIPE_DIRECTION_UP",
        r#"q\"uote"#,
        r"\u00e9",
        r"tab\t",
        "raw\u{1}control",
        "0192f2a4-7c1e-7000-8000-000000000001",
    ];

    const NUMBERS: [&str; 24] = [
        "0",
        "1",
        "7",
        "-1",
        "-0",
        "01",
        "1.0",
        "1e3",
        "1E3",
        "2147483647",
        "2147483648",
        "-2147483648",
        "-2147483649",
        "4294967295",
        "4294967296",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "18446744073709551615",
        "18446744073709551616",
        "1764500000000",
        "-",
        "1-",
    ];

    const MAP_KEYS: [&str; 7] = ["a", "b", "p", "z", "é", r"a\u0062", "ab"];

    const ODD_VALUES: [&str; 9] = [
        "1", "\"s\"", "true", "{}", "[]", "null", "1.5", "nul", "[1]",
    ];

    impl Gen {
        fn chance(&mut self, p: f64) -> bool {
            self.rng.random_bool(p)
        }

        fn pick<'s>(&mut self, items: &[&'s str]) -> &'s str {
            items[self.rng.random_range(0..items.len())]
        }

        /// Mostly nothing, sometimes JSON whitespace (or a byte that is not).
        fn ws(&mut self, out: &mut String) {
            if self.chance(0.06) {
                out.push_str(self.pick(&[" ", "\n", "\t", "\r", "  \n ", "\u{b}"]));
            }
        }

        fn string(&mut self, out: &mut String) {
            out.push('"');
            out.push_str(self.pick(&STRINGS));
            out.push('"');
        }

        fn item(&mut self, kind: ValueKind, depth: usize, out: &mut String) {
            if self.chance(0.01) {
                out.push_str(self.pick(&ODD_VALUES));
                return;
            }
            match kind {
                ValueKind::Str | ValueKind::Enum(_) => {
                    if self.chance(0.7) && kind == ValueKind::Str {
                        out.push_str(&format!("\"v{}\"", self.rng.random_range(0..50)));
                    } else {
                        self.string(out);
                    }
                }
                ValueKind::Bool => out.push_str(if self.chance(0.5) { "true" } else { "false" }),
                ValueKind::I32 | ValueKind::I64 | ValueKind::U32 | ValueKind::U64 => {
                    out.push_str(self.pick(&NUMBERS));
                }
                ValueKind::Message(message) => self.message(message, depth + 1, out),
                ValueKind::Never => out.push_str(self.pick(&ODD_VALUES)),
            }
        }

        fn value(&mut self, field: &FieldInfo, depth: usize, out: &mut String) {
            if self.chance(0.02) {
                out.push_str("null");
                return;
            }
            match field.shape {
                Shape::Single => self.item(field.kind, depth, out),
                Shape::List => {
                    out.push('[');
                    for i in 0..self.rng.random_range(0..4) {
                        if i > 0 {
                            out.push(',');
                        }
                        self.ws(out);
                        self.item(field.kind, depth, out);
                    }
                    out.push(']');
                }
                Shape::Map => {
                    out.push('{');
                    let mut keys: Vec<&str> = (0..self.rng.random_range(0..4))
                        .map(|_| self.pick(&MAP_KEYS))
                        .collect();
                    if self.chance(0.7) {
                        keys.sort_unstable();
                        keys.dedup();
                    }
                    for (i, key) in keys.into_iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        self.ws(out);
                        out.push_str(&format!("\"{key}\":"));
                        self.item(field.kind, depth, out);
                    }
                    out.push('}');
                }
            }
        }

        /// A message object: some of its fields, mostly in the record's order, sometimes a
        /// key repeated, unknown or escaped.
        fn message(&mut self, message: usize, depth: usize, out: &mut String) {
            let table = self.tables.messages[message].clone();
            let mut fields: Vec<usize> = (0..table.fields.len())
                .filter(|&i| {
                    let ruled = table.min_len.iter().any(|&(f, _)| f == i);
                    depth < 3 && self.chance(if ruled { 0.95 } else { 0.3 })
                })
                .collect();
            self.order_and_write(&table, &mut fields, depth, out);
        }

        fn order_and_write(
            &mut self,
            table: &MessageTable,
            fields: &mut Vec<usize>,
            depth: usize,
            out: &mut String,
        ) {
            if self.chance(0.7) {
                fields.sort_unstable_by_key(|&i| table.fields[i].rank);
            } else {
                for i in (1..fields.len()).rev() {
                    fields.swap(i, self.rng.random_range(0..=i));
                }
            }
            if !fields.is_empty() && self.chance(0.03) {
                fields.push(fields[0]);
            }
            out.push('{');
            for (n, &i) in fields.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                self.ws(out);
                let field = &table.fields[i];
                match self.rng.random_range(0..100) {
                    0 => out.push_str("\"nope\""),
                    1 => out.push_str(&format!("\"{}\"", field.name.replace('_', r"\u005f"))),
                    _ => out.push_str(&format!("\"{}\"", field.name)),
                }
                self.ws(out);
                out.push(':');
                self.ws(out);
                // The envelope's fields every valid event needs, mostly valid.
                let usual = match &*field.name {
                    "app_id" => Some(r#""app""#),
                    "device_id" => Some(r#""d""#),
                    "timestamp_ms" => Some("1764500000000"),
                    _ => None,
                };
                match usual {
                    Some(usual) if depth == 0 && self.chance(0.9) => out.push_str(usual),
                    _ => self.value(field, depth, out),
                }
                self.ws(out);
            }
            out.push('}');
        }

        /// An envelope: mostly a valid event of this app with one payload.
        fn envelope(&mut self) -> String {
            let envelope = self.tables.envelope;
            let table = self.tables.messages[envelope].clone();
            let payloads: Vec<usize> = (0..table.fields.len())
                .filter(|&i| table.fields[i].in_payload)
                .collect();
            let mut fields = Vec::new();
            for (i, field) in table.fields.iter().enumerate() {
                let p = match &*field.name {
                    "app_id" | "device_id" | "timestamp_ms" => 0.97,
                    "idempotency_key" => 0.7,
                    _ if field.in_payload => 0.0,
                    _ => 0.4,
                };
                if self.chance(p) {
                    fields.push(i);
                }
            }
            for _ in 0..[0, 1, 1, 1, 1, 1, 1, 1, 1, 2][self.rng.random_range(0..10)] {
                fields.push(payloads[self.rng.random_range(0..payloads.len())]);
            }
            let mut out = String::new();
            self.ws(&mut out);
            self.order_and_write(&table, &mut fields, 0, &mut out);
            self.ws(&mut out);
            out
        }

        /// Sometimes cut short or with one ASCII byte replaced or added.
        fn damage(&mut self, text: String) -> String {
            let ascii: Vec<usize> = text
                .char_indices()
                .filter(|(_, c)| c.is_ascii())
                .map(|(i, _)| i)
                .collect();
            if ascii.is_empty() {
                return text;
            }
            let at = ascii[self.rng.random_range(0..ascii.len())];
            let byte = self.pick(&["{", "}", "[", "]", ",", ":", "\"", "\\", " ", "0", "a", "-"]);
            match self.rng.random_range(0..10) {
                0 => text[..at].to_owned(),
                1 => format!("{}{byte}{}", &text[..at], &text[at + 1..]),
                2 => format!("{}{byte}{}", &text[..at], &text[at..]),
                _ => text,
            }
        }
    }

    fn generator(seed: u64) -> Gen {
        let pass = pass();
        Gen {
            rng: StdRng::seed_from_u64(seed),
            tables: pass.tables,
        }
    }

    /// The differential test: on generated events (valid shapes, escapes, unicode, numbers,
    /// nesting, whitespace, truncated and invalid input) the reader answers only where the
    /// canonical pass accepts, and then with the same record, id and key.
    #[test]
    fn the_reader_agrees_with_the_pass_on_generated_events() {
        let pass = pass();
        let mut generator = generator(14);
        let (mut lean_count, mut pass_count) = (0, 0);
        for _ in 0..20_000 {
            let event = generator.envelope();
            let text = generator.damage(event);
            let serde = pass.accept(&text, &CONTEXT);
            pass_count += usize::from(serde.is_some());
            if let Some(lean) = accept(&pass, &text, &CONTEXT) {
                lean_count += 1;
                let serde = serde.unwrap_or_else(|| panic!("only the reader accepts {text}"));
                assert_same(&lean, &serde, &text);
            }
        }
        // Not vacuous: many events are valid, and the reader takes a good part of those.
        eprintln!("of 20 000 events, the pass accepted {pass_count}, the reader {lean_count}");
        assert!(pass_count > 2_000, "pass accepted {pass_count}");
        assert!(
            lean_count > pass_count / 4,
            "reader {lean_count} of {pass_count}"
        );
    }

    /// The same over whole batches: all or nothing, the same records in the same order.
    #[test]
    fn the_reader_agrees_with_the_pass_on_generated_batches() {
        let pass = pass();
        let mut generator = generator(50);
        let (mut lean_count, mut pass_count) = (0, 0);
        for _ in 0..3_000 {
            let mut body = String::new();
            generator.ws(&mut body);
            body.push_str(if generator.chance(0.97) { "{" } else { "[" });
            generator.ws(&mut body);
            body.push_str(generator.pick(&[r#""events""#, r#""events""#, r#""event""#]));
            generator.ws(&mut body);
            body.push(':');
            generator.ws(&mut body);
            body.push('[');
            let count = generator.rng.random_range(0..4);
            for i in 0..count {
                if i > 0 {
                    body.push(',');
                }
                // Mostly events the reader takes, so that whole batches pass.
                let event = loop {
                    let event = generator.envelope();
                    if generator.chance(0.2) || accept(&pass, &event, &CONTEXT).is_some() {
                        break event;
                    }
                };
                body.push_str(&event);
            }
            body.push(']');
            generator.ws(&mut body);
            body.push_str(generator.pick(&[
                "}",
                "}",
                "}",
                "}",
                "}",
                "}",
                "},",
                "}}",
                r#","x":1}"#,
            ]));
            generator.ws(&mut body);
            let body = generator.damage(body);
            let max = if generator.chance(0.8) {
                4
            } else {
                generator.rng.random_range(1..4)
            };
            let serde = pass.accept_batch(&body, max, &CONTEXT);
            pass_count += usize::from(serde.is_some());
            if let Some(lean) = accept_batch(&pass, &body, max, &CONTEXT) {
                lean_count += 1;
                let serde = serde.unwrap_or_else(|| panic!("only the reader accepts {body}"));
                assert_eq!(lean.len(), serde.len(), "{body}");
                for (lean, serde) in lean.iter().zip(&serde) {
                    assert_same(lean, serde, &body);
                }
            }
        }
        eprintln!("of 3 000 batches, the pass accepted {pass_count}, the reader {lean_count}");
        assert!(pass_count > 300, "pass accepted {pass_count}");
        assert!(
            lean_count > pass_count / 2,
            "reader {lean_count} of {pass_count}"
        );
    }
}
