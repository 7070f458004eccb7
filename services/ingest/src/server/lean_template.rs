//! The shape of an event [`read_event`] read in full, to read the next events of the batch by:
//! the events of one batch nearly always have the same members in the same order, so one of
//! the same shape is read by comparing the bytes between its values with the template's and
//! deciding only its values again, and its record is the template's with its own values in
//! their places, instead of walking the field tables key by key and merging the members.

use std::ops::Range;

use super::canonical_pass::{CanonicalPass, Written, chars_below};
use super::event::IngestContext;
use super::field_table::FieldTables;
use super::fresh_id;
use super::json_text::plain_len;
use super::lean_reader::{
    Kept, LeafAt, LeafCheck, Piece, Reader, Records, integer_read, string_default,
};
#[cfg(doc)]
use super::lean_reader::{read_event, write_record};

/// A place in the template's event: `offset` bytes into its literal number `literal`. The same
/// place in another event of the same shape is as far into that event's literal.
#[derive(Clone, Copy)]
struct Spot {
    literal: usize,
    offset: usize,
}

/// How the record of an event of the template's shape is written, piece by piece.
enum Step {
    /// Bytes of the template's record, the same in every event of the shape.
    Same(Range<usize>),
    /// The event's bytes between two places (a member copied from the request).
    Copy(Spot, Spot),
    /// A fresh id.
    FreshId,
    /// A fresh idempotency key.
    FreshKey,
}

/// Where a leaf of the event being matched is, and its integer.
pub(super) struct FoundLeaf {
    start: usize,
    end: usize,
    int: Option<i64>,
}

/// The shape of an event the reader read in full: its bytes cut at its leaves (the text of
/// each string, each integer), what the reader decided from each leaf, and its record cut at
/// the pieces copied from the request and the fresh values.
///
/// Why this is sure to answer as [`read_event`] would: an event whose bytes outside its leaves
/// are the same is tokenized the same way (a string's text ends at its first quote, backslash
/// or control character, an integer at its first byte that is not a digit, as the reader reads
/// them, and the literal after a leaf must follow it; the byte that picks how a value is read
/// is a literal's, or an integer's first byte, which only `-` or a digit can be on either
/// side), so the reader would meet the same keys, in the same order and nesting, with the same
/// whitespace. (A place at an empty string's boundary is not ambiguous: no place the template
/// keeps is a string's closing quote, and an empty string only matches an empty one.) What it decides from a leaf's
/// bytes (whether a string of its kind is accepted and is the default, an enum name, a
/// `min_len` rule, whether an integer fits and is zero) is decided here again with the same
/// functions, and must come out as in the template; then it keeps the same members and breaks
/// no rule it did not break. [`write_record`] then decides from the leaves only whether the
/// app is the request's and the timestamp positive (checked here again) and whether an id or
/// key was given (a non-empty string, which is not the default: the same as in the template);
/// everything else it writes follows from the kept members, so the record is the template's
/// with this event's bytes copied where the template's were, and fresh values where it had
/// fresh ones. Anything else (another shape, a leaf decided otherwise, another app, a
/// timestamp not positive) is read by [`read_event`], whose shape becomes the template.
pub(super) struct Template {
    /// The bytes between the leaves, as ranges of the request: one more than the leaves.
    literals: Vec<Range<usize>>,
    leaves: Vec<LeafCheck>,
    /// The template event's record.
    record: Vec<u8>,
    steps: Vec<Step>,
    /// The leaves of the app id and of the timestamp.
    app_id: usize,
    timestamp: usize,
    /// The leaves of the id and idempotency key the event gave; `None`: a fresh one.
    id: Option<usize>,
    idempotency_key: Option<usize>,
}

impl Template {
    /// The template of the event `start..end` that [`read_event`] just read, with the leaves
    /// it noted, the members it kept, and its record `written` in `records` with the pieces
    /// noted while writing it; `None` if a place falls inside a leaf.
    fn build(
        reuse: Option<Template>,
        pass: &CanonicalPass,
        event: Range<usize>,
        leaves: &[LeafAt],
        kept: &[Kept],
        records: &Records,
        written: &Written,
    ) -> Option<Template> {
        // An evicted template's buffers, so a batch of changing shapes does not allocate per
        // event.
        let (mut literals, mut old_leaves, mut old_record, mut steps) = match reuse {
            Some(old) => (old.literals, old.leaves, old.record, old.steps),
            None => Default::default(),
        };
        literals.clear();
        let mut from = event.start;
        for leaf in leaves {
            if leaf.start < from || leaf.end < leaf.start {
                return None;
            }
            literals.push(from..leaf.start);
            from = leaf.end;
        }
        if event.end < from {
            return None;
        }
        literals.push(from..event.end);
        let spot = |at: usize| {
            let literal = literals
                .iter()
                .position(|range| range.start <= at && at <= range.end)?;
            Some(Spot {
                literal,
                offset: at - literals.get(literal)?.start,
            })
        };
        let leaf_at = |range: (usize, usize)| {
            leaves
                .iter()
                .position(|leaf| (leaf.start, leaf.end) == range)
        };
        let member = |field: usize| kept.iter().find(|k| k.field == field);
        let given = |field: usize| match member(field).and_then(|k| k.read.text) {
            Some(text) if text.1 > text.0 => leaf_at(text).map(Some),
            _ => Some(None),
        };
        let timestamp = member(pass.timestamp_ms)?;

        let record = written.range.clone();
        steps.clear();
        let mut at = record.start;
        for piece in &records.pieces {
            let (to, len, step) = match piece {
                Piece::Copy { from, to } => (
                    *to,
                    from.len(),
                    Step::Copy(spot(from.start)?, spot(from.end)?),
                ),
                Piece::Fresh { to, len, key } => {
                    (*to, *len, if *key { Step::FreshKey } else { Step::FreshId })
                }
            };
            if to < at {
                return None;
            }
            if to > at {
                steps.push(Step::Same(at - record.start..to - record.start));
            }
            steps.push(step);
            at = to + len;
        }
        if record.end < at {
            return None;
        }
        steps.push(Step::Same(at - record.start..record.end - record.start));
        old_leaves.clear();
        old_leaves.extend(leaves.iter().map(|leaf| leaf.check));
        old_record.clear();
        old_record.extend_from_slice(records.bytes.get(record)?);
        Some(Template {
            literals,
            leaves: old_leaves,
            record: old_record,
            steps,
            app_id: leaf_at(member(pass.app_id)?.read.text?)?,
            timestamp: leaf_at((timestamp.value.start, timestamp.value.end))?,
            id: given(pass.id)?,
            idempotency_key: given(pass.idempotency_key)?,
        })
    }

    /// Reads the event at the reader's place if it has this shape and writes its record to
    /// `records`, the reader then after the event; `None` (the reader's place undefined,
    /// nothing written) if the event is not of this shape, or is of another app or timestamp.
    fn read(
        &self,
        tables: &FieldTables,
        reader: &mut Reader<'_>,
        found: &mut Vec<FoundLeaf>,
        records: &mut Records,
        context: &IngestContext<'_>,
    ) -> Option<Written> {
        let bytes = reader.bytes;
        let event_start = reader.at;
        found.clear();
        let mut literals = self.literals.iter();
        for leaf in &self.leaves {
            reader.eat_literal(bytes.get(literals.next()?.clone())?)?;
            let start = reader.at;
            match *leaf {
                LeafCheck::Str {
                    kind,
                    default,
                    min_chars,
                } => {
                    // The closing quote is the next literal's first byte. (With this schema
                    // every `min_len` is 1, which the default decides already; the check is
                    // for a longer rule.)
                    reader.at += plain_len(bytes.get(start..)?);
                    let text = reader.text.get(start..reader.at)?;
                    if string_default(tables, kind, text)? != default
                        || chars_below(text, min_chars)
                    {
                        return None;
                    }
                    found.push(FoundLeaf {
                        start,
                        end: reader.at,
                        int: None,
                    });
                }
                LeafCheck::Int { kind, default } => {
                    let read = integer_read(kind, reader.integer()?)?;
                    if read.default != default {
                        return None;
                    }
                    found.push(FoundLeaf {
                        start,
                        end: reader.at,
                        int: read.int,
                    });
                }
            }
        }
        reader.eat_literal(bytes.get(literals.next()?.clone())?)?;

        let text = |leaf: usize| {
            let leaf = found.get(leaf)?;
            reader.text.get(leaf.start..leaf.end)
        };
        if text(self.app_id)? != context.app_id
            || found.get(self.timestamp)?.int.unwrap_or_default() <= 0
        {
            return None;
        }
        let id = match self.id {
            Some(leaf) => text(leaf)?.to_owned(),
            None => fresh_id::event_id(context.received_ms),
        };
        let idempotency_key = match self.idempotency_key {
            Some(leaf) => text(leaf)?.to_owned(),
            None => fresh_id::idempotency_key(),
        };
        let at = |spot: Spot| match spot.literal.checked_sub(1) {
            None => Some(event_start + spot.offset),
            Some(leaf) => Some(found.get(leaf)?.end + spot.offset),
        };
        let start = records.bytes.len();
        let out = &mut records.bytes;
        for step in &self.steps {
            let piece = match *step {
                Step::Same(ref range) => self.record.get(range.clone()),
                Step::Copy(from, to) => at(from)
                    .zip(at(to))
                    .and_then(|(from, to)| bytes.get(from..to)),
                Step::FreshId => Some(id.as_bytes()),
                Step::FreshKey => Some(idempotency_key.as_bytes()),
            };
            let Some(piece) = piece else {
                out.truncate(start);
                return None;
            };
            out.extend_from_slice(piece);
        }
        Some(Written {
            id,
            idempotency_key,
            range: start..out.len(),
        })
    }
}

/// How many shapes a batch's reading keeps: events of a few kinds in turn are read by their
/// templates; every template tried costs about a scan of the event when it does not match.
const TEMPLATES: usize = 3;

/// After this many events read in full, and more of them than by a template, a batch's
/// events are too unlike each other: the reading stops making templates and trying them (each
/// event read in full then costs what it did before templates, plus nothing).
const GIVE_UP_AFTER: usize = 3;

/// The templates of one batch, the last one used first, and whether they still pay.
pub(super) struct Templates {
    list: Vec<Template>,
    hits: usize,
    misses: usize,
    on: bool,
}

impl Templates {
    pub(super) fn new() -> Templates {
        Templates {
            list: Vec::with_capacity(TEMPLATES),
            hits: 0,
            misses: 0,
            on: true,
        }
    }

    /// Whether events read in full should still make templates.
    pub(super) fn on(&self) -> bool {
        self.on
    }

    /// How many events were read by a template.
    pub(super) fn hits(&self) -> usize {
        self.hits
    }

    /// [`Template::read`] by the first template that matches, which becomes the first to be
    /// tried next; `None`, the reader back at its place, if none does.
    pub(super) fn read(
        &mut self,
        tables: &FieldTables,
        reader: &mut Reader<'_>,
        found: &mut Vec<FoundLeaf>,
        records: &mut Records,
        context: &IngestContext<'_>,
    ) -> Option<Written> {
        let start = reader.at;
        for at in 0..self.list.len() {
            let written = self
                .list
                .get(at)
                .and_then(|template| template.read(tables, reader, found, records, context));
            if let Some(written) = written {
                self.list.get_mut(..=at)?.rotate_right(1);
                self.hits += 1;
                return Some(written);
            }
            reader.at = start;
        }
        None
    }

    /// After an event was read in full (see [`Template::build`]): its template, first of the
    /// list, or no more templates for this batch.
    pub(super) fn add(
        &mut self,
        pass: &CanonicalPass,
        event: Range<usize>,
        leaves: &[LeafAt],
        kept: &[Kept],
        records: &Records,
        written: &Written,
    ) {
        self.misses += 1;
        if self.misses > GIVE_UP_AFTER && self.misses > self.hits {
            self.on = false;
            self.list.clear();
            return;
        }
        let reuse = if self.list.len() == TEMPLATES {
            self.list.pop()
        } else {
            None
        };
        if let Some(template) = Template::build(reuse, pass, event, leaves, kept, records, written)
        {
            self.list.insert(0, template);
        }
    }
}
