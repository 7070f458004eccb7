//! The reading of one event of [`lean_batch`](super::lean_batch): a cursor over the request's
//! bytes that checks each value against the [`FieldTables`] as the canonical pass does, and
//! the record written from the members it kept.

use std::ops::Range;

use super::canonical_pass::{
    ADDED, CanonicalPass, Written, chars_below, fits_signed, fits_unsigned,
};
use super::event::IngestContext;
use super::field_table::{FieldInfo, FieldTables, MessageTable, Shape, ValueKind};
use super::fresh_id;
use super::json_text::plain_len;

/// Nested messages deeper than this give up (`serde_json`'s limit is 128 levels of arrays and
/// objects, of which a message takes at most two; this stays well within it).
const MAX_DEPTH: usize = 32;

/// An envelope member the record keeps.
pub(super) struct Kept {
    /// Index into the envelope's [`MessageTable::fields`].
    pub(super) field: usize,
    pub(super) rank: u32,
    /// Where its value is in the request (copied as it is into the record).
    pub(super) value: Range<usize>,
    /// Where its key starts, if the key is followed by `:` and the value with no whitespace:
    /// then key and value are copied in one go.
    pub(super) compact_from: Option<usize>,
    pub(super) read: Read,
}

/// What a value is, beyond its bytes.
#[derive(Clone, Copy)]
pub(super) struct Read {
    /// The field's default (empty string, 0, false, first enum number, empty list or map).
    pub(super) default: bool,
    /// A string's text (between its quotes); `None` for any other value.
    pub(super) text: Option<(usize, usize)>,
    /// An integer, as `serde_json::Value::as_i64` reads it.
    pub(super) int: Option<i64>,
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
/// `context`'s `received_ms` as the record writes it (`lean_batch::received_ms_json`).
pub(super) fn read_event(
    pass: &CanonicalPass,
    reader: &mut Reader<'_>,
    kept: &mut Vec<Kept>,
    records: &mut Records,
    context: &IngestContext<'_>,
    received: &[u8],
) -> Option<Written> {
    let tables = &pass.tables;
    let envelope = tables.messages.get(tables.envelope)?;
    kept.clear();
    reader.leaves.clear();
    records.pieces.clear();
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
                    if reader.recording && read.text.is_some() {
                        reader.note_min_chars(rules.min_chars(index));
                    }
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
pub(super) fn write_record(
    pass: &CanonicalPass,
    envelope: &MessageTable,
    reader: &Reader<'_>,
    kept: &[Kept],
    records: &mut Records,
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
    let start = records.bytes.len();
    records.bytes.push(b'{');
    let mut first = true;
    let mut next_kept = kept.iter().peekable();
    for (rank, add) in &added {
        while let Some(k) = next_kept.next_if(|k| k.rank < *rank) {
            write_kept(envelope, reader, k, records, &mut first)?;
        }
        match add {
            Added::EventType(name) => {
                write_name(ADDED[0], &mut records.bytes, &mut first);
                write_plain(name, &mut records.bytes);
            }
            Added::ReceivedMs => {
                write_name(ADDED[1], &mut records.bytes, &mut first);
                records.bytes.extend_from_slice(received);
            }
            Added::Fresh(field, Some(fresh)) => {
                // Replaces the client's empty value, if it was kept.
                next_kept.next_if(|k| k.field == *field);
                let name = &envelope.fields.get(*field)?.name;
                write_name(name, &mut records.bytes, &mut first);
                // A fresh id or key is a UUID's text: hex digits and hyphens, nothing to
                // escape.
                records.bytes.push(b'"');
                records.fresh(fresh, *field == pass.idempotency_key);
                records.bytes.push(b'"');
            }
            Added::Fresh(_, None) => {}
        }
    }
    for k in next_kept {
        write_kept(envelope, reader, k, records, &mut first)?;
    }
    records.bytes.push(b'}');
    // A fresh value is moved, not copied again.
    Some(Written {
        id: id.map(str::to_owned).or(fresh_id)?,
        idempotency_key: idempotency_key.map(str::to_owned).or(fresh_key)?,
        range: start..records.bytes.len(),
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
    out: &mut Records,
    first: &mut bool,
) -> Option<()> {
    if let Some(from) = kept.compact_from {
        // The key is the proto name as it is written (no escapes), so `"key":value` as it
        // stands is what `serde_json` writes.
        if !std::mem::take(first) {
            out.bytes.push(b',');
        }
        out.copy(reader.bytes, from..kept.value.end)
    } else {
        write_name(
            &envelope.fields.get(kept.field)?.name,
            &mut out.bytes,
            first,
        );
        out.copy(reader.bytes, kept.value.clone())
    }
}

/// The records of a batch, one after the other, and while `recording` where each piece of
/// the last one written came from (what [`Template`](super::lean_template::Template) needs
/// to write the next events of the same shape).
pub(super) struct Records {
    pub(super) bytes: Vec<u8>,
    pub(super) recording: bool,
    pub(super) pieces: Vec<Piece>,
}

/// A piece of a record that is not the same in every event of one shape.
pub(super) enum Piece {
    /// The request's bytes `from` copied to `to`.
    Copy { from: Range<usize>, to: usize },
    /// A fresh id (or, if `key`, idempotency key) written at `to`, `len` bytes.
    Fresh { to: usize, len: usize, key: bool },
}

impl Records {
    /// A buffer of `capacity` bytes.
    pub(super) fn new(capacity: usize, recording: bool) -> Records {
        Records {
            bytes: Vec::with_capacity(capacity),
            recording,
            pieces: Vec::new(),
        }
    }

    fn copy(&mut self, request: &[u8], from: Range<usize>) -> Option<()> {
        let to = self.bytes.len();
        self.bytes.extend_from_slice(request.get(from.clone())?);
        if self.recording {
            self.pieces.push(Piece::Copy { from, to });
        }
        Some(())
    }

    fn fresh(&mut self, text: &str, key: bool) {
        let to = self.bytes.len();
        self.bytes.extend_from_slice(text.as_bytes());
        if self.recording {
            self.pieces.push(Piece::Fresh {
                to,
                len: text.len(),
                key,
            });
        }
    }
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

    /// The most characters a rule asks of `field` (0 if none does): a text that is not below
    /// it meets every rule of the field.
    fn min_chars(&self, field: usize) -> u64 {
        self.rules
            .iter()
            .filter(|&&(rule_field, _)| rule_field == field)
            .map(|&(_, min)| min)
            .max()
            .unwrap_or(0)
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

/// Whether a string of `kind` with `text` is the field's default; `None` if `kind` takes no
/// string or `text` is not one of the enum's names.
pub(super) fn string_default(tables: &FieldTables, kind: ValueKind, text: &str) -> Option<bool> {
    match kind {
        ValueKind::Str => Some(text.is_empty()),
        ValueKind::Enum(index) => Some(tables.enums.get(index)?.number(text)? == 0),
        _ => None,
    }
}

/// An integer read as a value of `kind`; `None` if it does not fit.
pub(super) fn integer_read(kind: ValueKind, integer: Integer) -> Option<Read> {
    let (fits, zero, int) = match integer {
        Integer::Negative(v) => (fits_signed(kind, v), false, Some(v)),
        Integer::NonNegative(v) => (fits_unsigned(kind, v), v == 0, i64::try_from(v).ok()),
    };
    fits.then_some(Read {
        default: zero,
        text: None,
        int,
    })
}

/// A scalar value read by [`Reader::item`]: a string's text (between its quotes) or an
/// integer, and what was decided from it.
pub(super) struct LeafAt {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) check: LeafCheck,
}

/// Everything the reader decided from one scalar value's bytes. Booleans and nulls are not
/// leaves: their bytes are part of the shape.
#[derive(Clone, Copy)]
pub(super) enum LeafCheck {
    /// A string of `kind`; `min_chars` is the largest `min_len` rule checked on it (0: none).
    Str {
        kind: ValueKind,
        default: bool,
        min_chars: u64,
    },
    /// An integer of `kind`.
    Int { kind: ValueKind, default: bool },
}

/// A JSON integer: negative ones as `serde_json` reads them into `i64`, the others `u64`.
#[derive(Clone, Copy)]
pub(super) enum Integer {
    Negative(i64),
    NonNegative(u64),
}

/// A cursor over the request's bytes.
pub(super) struct Reader<'a> {
    pub(super) text: &'a str,
    pub(super) bytes: &'a [u8],
    pub(super) at: usize,
    /// Whether [`Reader::item`] notes each scalar value it reads in `leaves`.
    pub(super) recording: bool,
    /// The scalar values read since [`read_event`] began, in order, when `recording`.
    pub(super) leaves: Vec<LeafAt>,
}

impl<'a> Reader<'a> {
    pub(super) fn new(text: &'a str) -> Reader<'a> {
        Reader {
            text,
            bytes: text.as_bytes(),
            at: 0,
            recording: false,
            leaves: Vec::new(),
        }
    }

    #[inline]
    fn note_leaf(&mut self, start: usize, end: usize, check: LeafCheck) {
        if self.recording {
            self.leaves.push(LeafAt { start, end, check });
        }
    }

    /// The `min_len` rule just checked on the string last read, if any.
    fn note_min_chars(&mut self, min_chars: u64) {
        if !self.recording {
            return;
        }
        if let Some(LeafAt {
            check: LeafCheck::Str { min_chars: at, .. },
            ..
        }) = self.leaves.last_mut()
        {
            *at = min_chars;
        }
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    pub(super) fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    pub(super) fn eat(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    pub(super) fn eat_literal(&mut self, literal: &[u8]) -> Option<()> {
        let rest = self.bytes.get(self.at..)?;
        if !rest.starts_with(literal) {
            return None;
        }
        self.at += literal.len();
        Some(())
    }

    /// JSON's whitespace, as `serde_json` skips it.
    pub(super) fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    pub(super) fn at_end(&self) -> Option<()> {
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
    pub(super) fn integer(&mut self) -> Option<Integer> {
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
                let default = string_default(tables, kind, self.text(range)?)?;
                self.note_leaf(
                    range.0,
                    range.1,
                    LeafCheck::Str {
                        kind,
                        default,
                        min_chars: 0,
                    },
                );
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
                let start = self.at;
                let read = integer_read(kind, self.integer()?)?;
                self.note_leaf(
                    start,
                    self.at,
                    LeafCheck::Int {
                        kind,
                        default: read.default,
                    },
                );
                Some(read)
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
                    if self.recording && read.text.is_some() {
                        self.note_min_chars(rules.min_chars(index));
                    }
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
