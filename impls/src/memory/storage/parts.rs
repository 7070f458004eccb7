//! The records of a read, taken under the storage's lock a chunk at a time
//! ([`RecordLog::parts`](super::records::RecordLog::parts)) and had once it is released: a
//! spilled chunk's bytes are read from their file then, not while every other request waits.

use bytes::{Bytes, BytesMut};
use courier_traits::storage::Joining;

use super::spill::{SpillRef, SpillRun};

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

/// The body `joining` makes of the records of `parts` (`bytes` of them): concatenated, the
/// spilled chunks' bytes are read straight into the body, one read for chunks side by side in
/// their file; otherwise each spilled chunk's bytes are read once and its records joined from
/// that, with no handle per record.
pub(super) fn join(parts: Vec<Part>, joining: Joining, bytes: usize) -> std::io::Result<Bytes> {
    if joining == Joining::Concat {
        let mut body = BytesMut::with_capacity(bytes);
        let mut run: Option<SpillRun> = None;
        for part in &parts {
            let (at, range) = match part {
                Part::Spilled { at, range, .. } => (at, range),
                Part::Packed { data, .. } => {
                    read_run(run.take(), &mut body)?;
                    body.extend_from_slice(data);
                    continue;
                }
                Part::Handles(records) => {
                    read_run(run.take(), &mut body)?;
                    records.iter().for_each(|r| body.extend_from_slice(r));
                    continue;
                }
            };
            let extended = run
                .as_mut()
                .is_some_and(|run| run.extend(at, range.clone()));
            if !extended {
                read_run(run.take(), &mut body)?;
                run = Some(SpillRun::new(at, range.clone()));
            }
        }
        read_run(run, &mut body)?;
        return Ok(body.freeze());
    }
    let parts = parts
        .into_iter()
        .map(Part::loaded)
        .collect::<std::io::Result<Vec<_>>>()?;
    Ok(joining.join(parts.iter().flat_map(Part::slices), bytes))
}

/// Appends `run`'s bytes, if any, to `body`.
fn read_run(run: Option<SpillRun>, body: &mut BytesMut) -> std::io::Result<()> {
    let Some(run) = run else { return Ok(()) };
    let start = body.len();
    body.resize(start + run.len(), 0);
    run.read_into(&mut body[start..])
}
