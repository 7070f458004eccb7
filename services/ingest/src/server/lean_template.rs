//! The shape of an event [`read_event`] read in full, to read the next events of the batch by:
//! the events of one batch nearly always have the same members in the same order, so one of
//! the same shape is read by comparing the bytes between its values with the template's and
//! deciding only its values again, instead of walking the field tables key by key.

use std::ops::Range;

use super::canonical_pass::chars_below;
use super::field_table::FieldTables;
use super::json_text::plain_len;
use super::lean_reader::{Kept, LeafAt, LeafCheck, Read, Reader, integer_read, string_default};
#[cfg(doc)]
use super::lean_reader::{read_event, write_record};

/// A place in the template's event: `offset` bytes into its literal number `literal`. The same
/// place in another event of the same shape is as far into that event's literal.
#[derive(Clone, Copy)]
struct Spot {
    literal: usize,
    offset: usize,
}

/// A kept member of the template's event, by [`Spot`]s and leaves.
struct KeptSpots {
    field: usize,
    rank: u32,
    value: (Spot, Spot),
    compact_from: Option<Spot>,
    default: bool,
    /// The leaf that is its string's text.
    text: Option<usize>,
    /// The leaf that is its integer.
    int: Option<usize>,
}

/// Where a leaf of the event being matched is, and its integer.
pub(super) struct FoundLeaf {
    start: usize,
    end: usize,
    int: Option<i64>,
}

/// The shape of an event the reader read in full: its bytes cut at its leaves (the text of
/// each string, each integer), what the reader decided from each leaf, and its kept members.
///
/// Why this is sure to answer as [`read_event`] would: an event whose bytes outside its leaves
/// are the same is tokenized the same way (a string's text ends at its first quote, backslash
/// or control character, an integer at its first byte that is not a digit, as the reader reads
/// them, and the literal after a leaf must follow it), so the reader would meet the same keys,
/// in the same order and nesting, with the same whitespace. What it decides from a leaf's
/// bytes (whether a string of its kind is accepted and is the default, an enum name, a
/// `min_len` rule, whether an integer fits and is zero) is decided here again with the same
/// functions, and must come out as in the template; then it keeps the same members, breaks no
/// rule it did not break, and reaches [`write_record`] with the same members at the places
/// this event has them. Anything else (another shape, a leaf decided otherwise) is read by
/// [`read_event`], whose shape becomes the template.
pub(super) struct Template {
    /// The bytes between the leaves, as ranges of the request: one more than the leaves.
    literals: Vec<Range<usize>>,
    leaves: Vec<LeafCheck>,
    /// The kept members in the order [`write_record`] takes them (by rank).
    kept: Vec<KeptSpots>,
}

impl Template {
    /// The template of the event `start..end` that [`read_event`] just read, with the leaves
    /// it noted and the members it kept; `None` if a place falls inside a leaf.
    pub(super) fn build(
        start: usize,
        end: usize,
        leaves: &[LeafAt],
        kept: &[Kept],
    ) -> Option<Template> {
        let mut literals = Vec::with_capacity(leaves.len() + 1);
        let mut from = start;
        for leaf in leaves {
            if leaf.start < from || leaf.end < leaf.start {
                return None;
            }
            literals.push(from..leaf.start);
            from = leaf.end;
        }
        if end < from {
            return None;
        }
        literals.push(from..end);
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
        let kept = kept
            .iter()
            .map(|k| {
                Some(KeptSpots {
                    field: k.field,
                    rank: k.rank,
                    value: (spot(k.value.start)?, spot(k.value.end)?),
                    compact_from: match k.compact_from {
                        Some(from) => Some(spot(from)?),
                        None => None,
                    },
                    default: k.read.default,
                    text: match k.read.text {
                        Some(range) => Some(leaf_at(range)?),
                        None => None,
                    },
                    int: match k.read.int {
                        Some(_) => Some(leaf_at((k.value.start, k.value.end))?),
                        None => None,
                    },
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Template {
            literals,
            leaves: leaves.iter().map(|leaf| leaf.check).collect(),
            kept,
        })
    }

    /// Matches the event at the reader's place against this shape: on a match, the reader is
    /// after the event and `kept` holds its members as [`read_event`] would have kept them;
    /// `None` (the reader's place undefined) if the event is not of this shape.
    pub(super) fn read(
        &self,
        tables: &FieldTables,
        reader: &mut Reader<'_>,
        kept: &mut Vec<Kept>,
        found: &mut Vec<FoundLeaf>,
    ) -> Option<()> {
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
        let at = |spot: Spot| match spot.literal.checked_sub(1) {
            None => Some(event_start + spot.offset),
            Some(leaf) => Some(found.get(leaf)?.end + spot.offset),
        };
        kept.clear();
        for k in &self.kept {
            kept.push(Kept {
                field: k.field,
                rank: k.rank,
                value: at(k.value.0)?..at(k.value.1)?,
                compact_from: match k.compact_from {
                    Some(from) => Some(at(from)?),
                    None => None,
                },
                read: Read {
                    default: k.default,
                    text: match k.text {
                        Some(leaf) => found.get(leaf).map(|leaf| Some((leaf.start, leaf.end)))?,
                        None => None,
                    },
                    int: match k.int {
                        Some(leaf) => found.get(leaf)?.int,
                        None => None,
                    },
                },
            });
        }
        Some(())
    }
}
