//! The records of a read, taken under the storage's lock a chunk at a time
//! ([`RecordLog::parts`](super::records::RecordLog::parts)) and had once it is released: a
//! spilled chunk's bytes are read from their file then, not while every other request waits.

use bytes::{Bytes, BytesMut};
use courier_traits::storage::Joining;

use super::spill::SpillRef;

/// Some consecutive records of one chunk.
pub(super) enum Part {
    /// Resident records back to back (a slice of a packed chunk), and where each ends in
    /// `data`.
    Packed { data: Bytes, ends: Vec<u32> },
    /// Resident records, a handle each.
    Handles(Vec<Bytes>),
    /// Records of a spilled chunk: the chunk's bytes in `range`, and where each record ends
    /// in them (from the range's start).
    Spilled {
        at: SpillRef,
        range: std::ops::Range<usize>,
        ends: Vec<u32>,
    },
}

impl Part {
    /// The part with a spilled chunk's bytes read (one read); a resident part as it is.
    fn loaded(self) -> std::io::Result<Part> {
        Ok(match self {
            Part::Spilled { at, range, ends } => Part::Packed {
                data: at.read(range)?,
                ends,
            },
            resident => resident,
        })
    }

    /// The part's records, one slice each (of a loaded part: a spilled one gives none).
    fn slices(&self) -> impl Iterator<Item = &[u8]> {
        let (data, ends, handles): (&[u8], &[u32], &[Bytes]) = match self {
            Part::Packed { data, ends } => (data, ends, &[]),
            Part::Handles(records) => (&[], &[], records),
            Part::Spilled { .. } => (&[], &[], &[]),
        };
        let packed = ends.iter().scan(0, move |start, &end| {
            let record = &data[*start..end as usize];
            *start = end as usize;
            Some(record)
        });
        packed.chain(handles.iter().map(|h| &h[..]))
    }
}

/// The records of `parts`, in order, a handle each (`records` of them, for the list's size).
pub(super) fn load(parts: Vec<Part>, records: usize) -> std::io::Result<Vec<Bytes>> {
    let mut out = Vec::with_capacity(records);
    let slices = |out: &mut Vec<Bytes>, data: Bytes, ends: Vec<u32>| {
        let mut start = 0;
        for end in ends {
            out.push(data.slice(start..end as usize));
            start = end as usize;
        }
    };
    for part in parts {
        match part {
            Part::Packed { data, ends } => slices(&mut out, data, ends),
            Part::Handles(records) => out.extend(records),
            Part::Spilled { at, range, ends } => slices(&mut out, at.read(range)?, ends),
        }
    }
    Ok(out)
}

/// The body `joining` makes of the records of `parts` (`bytes` of them): concatenated, a
/// spilled chunk's bytes are read straight into the body; otherwise each spilled chunk's
/// bytes are read once and its records joined from that, with no handle per record.
pub(super) fn join(parts: Vec<Part>, joining: Joining, bytes: usize) -> std::io::Result<Bytes> {
    if joining == Joining::Concat {
        let mut body = BytesMut::with_capacity(bytes);
        for part in &parts {
            match part {
                Part::Packed { data, .. } => body.extend_from_slice(data),
                Part::Handles(records) => records.iter().for_each(|r| body.extend_from_slice(r)),
                Part::Spilled { at, range, .. } => {
                    let start = body.len();
                    body.resize(start + range.len(), 0);
                    at.read_into(range.clone(), &mut body[start..])?;
                }
            }
        }
        return Ok(body.freeze());
    }
    let parts = parts
        .into_iter()
        .map(Part::loaded)
        .collect::<std::io::Result<Vec<_>>>()?;
    Ok(joining.join(parts.iter().flat_map(Part::slices), bytes))
}
