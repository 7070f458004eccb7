//! A stream's records in fixed-size chunks.
//!
//! One `Vec` of every record would, each time it doubles, copy all the records held so far
//! while the storage's lock is held (a stream of millions of records stalled every writer for
//! tens to hundreds of milliseconds at each doubling). Here a full chunk is never moved again,
//! so an append copies at most one chunk's worth, and a fork shares its source's full chunks
//! instead of copying their records.
//!
//! A chunk of small records is packed when it fills: its records' bytes are copied back to
//! back into one buffer, with where each ends. A `Bytes` handle per record costs its 32 bytes
//! plus, for a record received on its own, an allocation with its shared header (about 80
//! bytes a record beside 100-byte records, measured as peak RSS); packed, a record costs 4
//! bytes beside its own, and a read of consecutive records of a chunk is one slice of it.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use super::parts::{Part, load};
use super::spill::SpillRef;

/// Records per chunk: small enough that most records of a stream of a few hundred are packed
/// and that packing one chunk is a short copy; large enough that the chunk list of a stream of
/// ten million (39 063 chunks, 312 KiB of pointers) costs little beside its records.
pub(super) const CHUNK: usize = 256;

/// The most bytes a chunk's records may total to be packed when it fills. Packing copies them
/// while the storage's lock is held (about 100 µs for 2 MiB), once per [`CHUNK`] appends;
/// larger records keep their handles, whose cost beside them is small.
const PACK_MAX_BYTES: usize = 2 << 20;

/// The chunks of a log from one on, the tail last ([`RecordLog::chunks_from`]).
type Chunks<'a> = std::iter::Chain<
    std::iter::Map<std::slice::Iter<'a, Arc<Sealed>>, fn(&Arc<Sealed>) -> Chunk<'_>>,
    std::option::IntoIter<Chunk<'a>>,
>;

/// A full chunk: exactly [`CHUNK`] records, never changed again.
#[derive(Debug)]
pub(super) enum Sealed {
    /// The records' bytes back to back, and where each one ends in them.
    Packed { data: Bytes, ends: Box<[u32]> },
    /// A handle per record (a chunk too large to pack).
    Handles(Box<[Bytes]>),
    /// The records' bytes back to back in a spill file ([`super::spill`]), and where each one
    /// ends in them. Read with [`RecordLog::parts`], never under the storage's lock.
    Spilled { at: SpillRef, ends: Box<[u32]> },
}

impl Sealed {
    /// The bytes the chunk holds in memory (its records'; a spilled chunk's are not).
    pub(super) fn resident_bytes(&self) -> usize {
        match self {
            Sealed::Packed { data, ends } => data.len() + 4 * ends.len(),
            Sealed::Handles(records) => records.iter().map(Bytes::len).sum(),
            Sealed::Spilled { .. } => 0,
        }
    }

    /// The chunk's spilled twin, its bytes written by `write` (given them in order, to write
    /// back to back); `None` if it is spilled already, `write` failed, or its records total
    /// 4 GiB or more (their ends are 32 bits).
    pub(super) fn spilled_with(
        &self,
        write: impl FnOnce(&[&[u8]]) -> Option<SpillRef>,
    ) -> Option<Sealed> {
        match self {
            Sealed::Packed { data, ends } => Some(Sealed::Spilled {
                at: write(&[data])?,
                ends: ends.clone(),
            }),
            Sealed::Handles(records) => {
                let mut end = 0u32;
                let ends = records
                    .iter()
                    .map(|r| {
                        end = end.checked_add(u32::try_from(r.len()).ok()?)?;
                        Some(end)
                    })
                    .collect::<Option<Box<[u32]>>>()?;
                let parts: Vec<&[u8]> = records.iter().map(|r| &r[..]).collect();
                Some(Sealed::Spilled {
                    at: write(&parts)?,
                    ends,
                })
            }
            Sealed::Spilled { .. } => None,
        }
    }
}

/// The records of one chunk, sealed or the growing tail, by index.
#[derive(Clone, Copy)]
enum Chunk<'a> {
    Packed { data: &'a Bytes, ends: &'a [u32] },
    Handles(&'a [Bytes]),
    Spilled { at: &'a SpillRef, ends: &'a [u32] },
}

impl<'a> Chunk<'a> {
    fn len(self) -> usize {
        match self {
            Chunk::Packed { ends, .. } | Chunk::Spilled { ends, .. } => ends.len(),
            Chunk::Handles(records) => records.len(),
        }
    }

    /// Where record `i` lies in a packed chunk's data.
    fn span(ends: &[u32], i: usize) -> std::ops::Range<usize> {
        let start = if i == 0 { 0 } else { ends[i - 1] as usize };
        start..ends[i] as usize
    }

    /// Record `i` as a handle of its own (`i < self.len()`): a slice of a packed chunk's data;
    /// `None` for a spilled chunk's.
    fn record(self, i: usize) -> Option<Bytes> {
        match self {
            Chunk::Packed { data, ends } => Some(data.slice(Chunk::span(ends, i))),
            Chunk::Handles(records) => Some(records[i].clone()),
            Chunk::Spilled { .. } => None,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub(super) struct RecordLog {
    /// Chunks of exactly [`CHUNK`] records, never changed again, shared with forks.
    full: Vec<Arc<Sealed>>,
    /// The records after the full chunks (fewer than [`CHUNK`]).
    tail: Vec<Bytes>,
    /// The bytes of the records in `tail`.
    tail_bytes: usize,
}

impl RecordLog {
    pub(super) fn len(&self) -> usize {
        self.full.len() * CHUNK + self.tail.len()
    }

    pub(super) fn push(&mut self, record: Bytes) {
        self.tail_bytes += record.len();
        self.tail.push(record);
        if self.tail.len() == CHUNK {
            let sealed = seal(std::mem::take(&mut self.tail), self.tail_bytes);
            self.full.push(Arc::new(sealed));
            self.tail_bytes = 0;
            // A stream that filled one chunk is likely to fill the next: size it once
            // instead of regrowing it a dozen times.
            self.tail.reserve_exact(CHUNK);
        }
    }

    pub(super) fn extend(&mut self, records: impl IntoIterator<Item = Bytes>) {
        for record in records {
            self.push(record);
        }
    }

    /// The bytes of the (at most) `count` records from index `start`, in order (none if
    /// `start` is past the end).
    pub(super) fn slices(&self, start: usize, count: usize) -> Slices<'_> {
        Slices {
            chunks: self.chunks_from(start / CHUNK),
            within: start % CHUNK,
            left: count,
            current: Cursor::Done,
        }
    }

    /// The resident records from index `start` on, in order, each a handle of its own (a
    /// spilled one ends them: check [`RecordLog::resident`] first).
    pub(super) fn records_from(&self, start: usize) -> impl Iterator<Item = Bytes> + '_ {
        self.indexed_from(start)
            .map_while(|(chunk, i)| chunk.record(i))
    }

    /// How many full chunks the log holds.
    pub(super) fn sealed_len(&self) -> usize {
        self.full.len()
    }

    /// Full chunk `index`.
    pub(super) fn sealed(&self, index: usize) -> Option<&Arc<Sealed>> {
        self.full.get(index)
    }

    /// Puts `by` in place of full chunk `index` if that is still `chunk` (not a chunk of a
    /// stream made anew under the same name); answers whether it did.
    #[cfg_attr(not(feature = "log"), allow(dead_code))]
    pub(super) fn replace_sealed(&mut self, index: usize, chunk: &Arc<Sealed>, by: Sealed) -> bool {
        match self.full.get_mut(index) {
            Some(held) if Arc::ptr_eq(held, chunk) => {
                *held = Arc::new(by);
                true
            }
            _ => false,
        }
    }

    /// Whether the `count` records from index `start` are all in memory (none spilled): the
    /// reads below that borrow records need them to be.
    pub(super) fn resident(&self, start: usize, count: usize) -> bool {
        let Some(last) = start
            .saturating_add(count)
            .checked_sub(1)
            .filter(|_| count > 0)
        else {
            return true;
        };
        // The full chunks the records lie in (the tail is always resident).
        let end = (last / CHUNK + 1).min(self.full.len());
        let first = (start / CHUNK).min(end);
        !self.full[first..end]
            .iter()
            .any(|c| matches!(c.as_ref(), Sealed::Spilled { .. }))
    }

    /// The `count` records from index `start` (fewer past the end), as parts to have once
    /// the storage's lock is released: a chunk's resident records as a slice of it (packed) or
    /// their handles, a spilled chunk's as one read of their bytes.
    pub(super) fn parts(&self, start: usize, count: usize) -> Vec<Part> {
        let mut parts = Vec::new();
        let mut chunks = self.slices(start, count);
        // Where each record ends, from the start of the part's bytes.
        let ends_from = |ends: std::slice::Iter<'_, u32>, at: usize| -> Vec<u32> {
            ends.map(|&end| end - at as u32).collect()
        };
        while let Some(cursor) = chunks.next_chunk() {
            match cursor {
                Cursor::Packed { data, ends, at } => {
                    if let Some(&last) = ends.as_slice().last() {
                        parts.push(Part::Packed {
                            data: data.slice(at..last as usize),
                            ends: ends_from(ends, at),
                        });
                    }
                }
                Cursor::Handles(records) => parts.push(Part::Handles(records.cloned().collect())),
                Cursor::Spilled { spill, ends, at } => {
                    if let Some(&last) = ends.as_slice().last() {
                        parts.push(Part::Spilled {
                            at: spill.clone(),
                            range: at..last as usize,
                            ends: ends_from(ends, at),
                        });
                    }
                }
                Cursor::Done => {}
            }
        }
        parts
    }

    /// The `count` records from index `start`, read now (a spilled chunk's from its file):
    /// for the rare reads that need records under the storage's lock (a fork's cut).
    pub(super) fn records(&self, start: usize, count: usize) -> std::io::Result<Vec<Bytes>> {
        load(
            self.parts(start, count),
            count.min(self.len().saturating_sub(start)),
        )
    }

    /// How many records from index `start` fit within `max_records` and `max_bytes` (the
    /// first one always), and their bytes. A packed chunk is measured from where its records
    /// end, not record by record.
    pub(super) fn extent(
        &self,
        start: usize,
        max_records: usize,
        max_bytes: usize,
    ) -> (usize, usize) {
        let (mut count, mut bytes) = (0usize, 0usize);
        let mut chunks = self.slices(start, max_records);
        while let Some(cursor) = chunks.next_chunk() {
            match cursor {
                Cursor::Packed { ends, at, .. } | Cursor::Spilled { ends, at, .. } => {
                    let ends = ends.as_slice();
                    // Records while the bytes so far fit; the first of the read always.
                    let mut fit =
                        ends.partition_point(|&end| bytes + (end as usize - at) <= max_bytes);
                    if count == 0 {
                        fit = fit.max(1).min(ends.len());
                    }
                    if let Some(&end) = fit.checked_sub(1).and_then(|last| ends.get(last)) {
                        bytes += end as usize - at;
                        count += fit;
                    }
                    if fit < ends.len() {
                        break;
                    }
                }
                Cursor::Handles(records) => {
                    for data in records {
                        if count > 0 && bytes + data.len() > max_bytes {
                            return (count, bytes);
                        }
                        bytes += data.len();
                        count += 1;
                    }
                }
                Cursor::Done => {}
            }
        }
        (count, bytes)
    }

    /// Appends the bytes of the `count` records from index `start` to `out`: a packed chunk's
    /// records in one copy, they lie back to back.
    pub(super) fn concat_into(&self, start: usize, count: usize, out: &mut BytesMut) {
        let mut chunks = self.slices(start, count);
        while let Some(cursor) = chunks.next_chunk() {
            match cursor {
                Cursor::Packed { data, ends, at } => {
                    if let Some(&end) = ends.as_slice().last() {
                        out.put_slice(&data[at..end as usize]);
                    }
                }
                Cursor::Handles(records) => {
                    for record in records {
                        out.put_slice(record);
                    }
                }
                Cursor::Spilled { .. } => debug_assert!(false, "read spilled records as parts"),
                Cursor::Done => {}
            }
        }
    }

    /// The `count` records from index `start` as one slice, when they lie back to back in one
    /// packed chunk (no copy); `None` otherwise.
    pub(super) fn contiguous(&self, start: usize, count: usize) -> Option<Bytes> {
        let last = start.checked_add(count)?.checked_sub(1)?;
        if start / CHUNK != last / CHUNK {
            return None;
        }
        match self.full.get(start / CHUNK)?.as_ref() {
            Sealed::Packed { data, ends } => {
                let first = Chunk::span(ends, start % CHUNK).start;
                let end = Chunk::span(ends, last % CHUNK).end;
                Some(data.slice(first..end))
            }
            Sealed::Handles(_) | Sealed::Spilled { .. } => None,
        }
    }

    /// The first `n` records (all of them if `n` is past the end) as a log of their own, which
    /// shares this one's full chunks.
    pub(super) fn prefix(&self, n: usize) -> std::io::Result<RecordLog> {
        let n = n.min(self.len());
        let whole = n / CHUNK;
        let mut prefix = RecordLog {
            full: self.full[..whole].to_vec(),
            tail: Vec::new(),
            tail_bytes: 0,
        };
        prefix.extend(self.records(whole * CHUNK, n % CHUNK)?);
        Ok(prefix)
    }

    /// Each record from index `start` on, as its chunk and its index in it.
    fn indexed_from(&self, start: usize) -> impl Iterator<Item = (Chunk<'_>, usize)> + '_ {
        let within = start % CHUNK;
        self.chunks_from(start / CHUNK)
            .enumerate()
            .flat_map(move |(n, chunk)| {
                let from = if n == 0 { within } else { 0 };
                (from..chunk.len().max(from)).map(move |i| (chunk, i))
            })
    }

    /// The chunks from the `first`th on, the tail last (none past the tail). Sliced, not
    /// skipped: a read at the end of a long stream does not walk its chunk list.
    fn chunks_from(&self, first: usize) -> Chunks<'_> {
        let tail = (first <= self.full.len()).then_some(Chunk::Handles(&self.tail));
        let sealed: fn(&Arc<Sealed>) -> Chunk<'_> = |sealed| match sealed.as_ref() {
            Sealed::Packed { data, ends } => Chunk::Packed { data, ends },
            Sealed::Handles(records) => Chunk::Handles(records),
            Sealed::Spilled { at, ends } => Chunk::Spilled { at, ends },
        };
        self.full
            .get(first..)
            .unwrap_or_default()
            .iter()
            .map(sealed)
            .chain(tail)
    }
}

/// The bytes of consecutive records ([`RecordLog::slices`]), a chunk at a time. `fold` (and
/// so `for_each`) walks each chunk in a loop of its own.
pub(super) struct Slices<'a> {
    chunks: Chunks<'a>,
    /// Where to start in the next chunk (the first one's offset, then 0).
    within: usize,
    /// Records not yet taken into `current`.
    left: usize,
    current: Cursor<'a>,
}

/// Where [`Slices`] is within its chunk.
enum Cursor<'a> {
    Packed {
        data: &'a Bytes,
        ends: std::slice::Iter<'a, u32>,
        /// Where the next record starts in `data`.
        at: usize,
    },
    Handles(std::slice::Iter<'a, Bytes>),
    /// A spilled chunk's records: their ends, and where the first starts.
    Spilled {
        spill: &'a SpillRef,
        ends: std::slice::Iter<'a, u32>,
        at: usize,
    },
    Done,
}

impl<'a> Slices<'a> {
    /// The next chunk's records within what is left, or `None` at the end. Whole-chunk work
    /// ([`RecordLog::extent`], [`RecordLog::concat_into`]) walks these.
    fn next_chunk(&mut self) -> Option<Cursor<'a>> {
        if self.left == 0 {
            return None;
        }
        let chunk = self.chunks.next()?;
        let from = std::mem::take(&mut self.within).min(chunk.len());
        let to = chunk.len().min(from.saturating_add(self.left));
        self.left -= to - from;
        Some(match chunk {
            Chunk::Packed { data, ends } => Cursor::Packed {
                data,
                at: if from == 0 {
                    0
                } else {
                    ends[from - 1] as usize
                },
                ends: ends[from..to].iter(),
            },
            Chunk::Handles(records) => Cursor::Handles(records[from..to].iter()),
            Chunk::Spilled { at: spill, ends } => Cursor::Spilled {
                spill,
                at: if from == 0 {
                    0
                } else {
                    ends[from - 1] as usize
                },
                ends: ends[from..to].iter(),
            },
        })
    }
}

impl<'a> Iterator for Slices<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            match &mut self.current {
                Cursor::Packed { data, ends, at } => {
                    if let Some(&end) = ends.next() {
                        let record = &data[*at..end as usize];
                        *at = end as usize;
                        return Some(record);
                    }
                }
                Cursor::Handles(records) => {
                    if let Some(record) = records.next() {
                        return Some(record);
                    }
                }
                Cursor::Spilled { .. } => debug_assert!(false, "read spilled records as parts"),
                Cursor::Done => {}
            }
            self.current = self.next_chunk()?;
        }
    }

    fn fold<B, F>(mut self, init: B, mut f: F) -> B
    where
        F: FnMut(B, &'a [u8]) -> B,
    {
        let mut acc = init;
        loop {
            match std::mem::replace(&mut self.current, Cursor::Done) {
                Cursor::Packed { data, ends, mut at } => {
                    for &end in ends {
                        acc = f(acc, &data[at..end as usize]);
                        at = end as usize;
                    }
                }
                Cursor::Handles(records) => {
                    for record in records {
                        acc = f(acc, record);
                    }
                }
                Cursor::Spilled { .. } => debug_assert!(false, "read spilled records as parts"),
                Cursor::Done => {}
            }
            match self.next_chunk() {
                Some(next) => self.current = next,
                None => return acc,
            }
        }
    }
}

/// A full chunk, packed if its records total at most [`PACK_MAX_BYTES`].
fn seal(records: Vec<Bytes>, bytes: usize) -> Sealed {
    if bytes > PACK_MAX_BYTES {
        return Sealed::Handles(records.into_boxed_slice());
    }
    let mut data = Vec::with_capacity(bytes);
    let mut ends = Vec::with_capacity(records.len());
    for record in &records {
        data.extend_from_slice(record);
        // At most PACK_MAX_BYTES, so it fits.
        ends.push(data.len() as u32);
    }
    Sealed::Packed {
        data: Bytes::from(data),
        ends: ends.into_boxed_slice(),
    }
}

impl From<Vec<Bytes>> for RecordLog {
    fn from(records: Vec<Bytes>) -> RecordLog {
        let mut log = RecordLog::default();
        log.extend(records);
        log
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(n: usize) -> RecordLog {
        (0..n)
            .map(|i| Bytes::from(i.to_string()))
            .collect::<Vec<_>>()
            .into()
    }

    fn read(log: &RecordLog, start: usize) -> Vec<usize> {
        let number = |b: &[u8]| -> usize {
            std::str::from_utf8(b)
                .expect("utf8")
                .parse()
                .expect("number")
        };
        let slices: Vec<usize> = log.slices(start, usize::MAX).map(number).collect();
        let records: Vec<usize> = log.records_from(start).map(|b| number(&b)).collect();
        assert_eq!(slices, records, "both iterators give the same records");
        slices
    }

    /// Which ranges count as resident when one chunk in the middle is spilled, and that every
    /// record reads back through the spill file.
    #[test]
    fn resident_ranges_are_those_clear_of_spilled_chunks() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut spiller = super::super::spill::Spiller::new(dir.path()).expect("spiller");
        let mut log = numbered(3 * CHUNK + 5);
        let chunk = log.full[1].clone();
        let spilled = chunk
            .spilled_with(|parts| spiller.write(parts))
            .expect("spilled");
        assert!(log.replace_sealed(1, &chunk, spilled));
        let again = chunk.spilled_with(|parts| spiller.write(parts));
        assert!(
            !log.replace_sealed(1, &chunk, again.expect("spilled")),
            "chunk 1 is no longer the one taken"
        );
        for (start, count, resident) in [
            (0, CHUNK, true),
            (0, CHUNK + 1, false),
            (CHUNK - 1, 1, true),
            (2 * CHUNK - 1, 1, false),
            (2 * CHUNK, usize::MAX, true),
            (0, usize::MAX, false),
            (CHUNK, usize::MAX, false),
            (CHUNK + 5, 0, true),
            (usize::MAX, usize::MAX, true),
        ] {
            assert_eq!(log.resident(start, count), resident, "{start} + {count}");
        }
        let number = |b: &Bytes| -> usize {
            std::str::from_utf8(b)
                .expect("utf8")
                .parse()
                .expect("number")
        };
        let all: Vec<usize> = log
            .records(0, usize::MAX)
            .expect("read")
            .iter()
            .map(number)
            .collect();
        assert_eq!(all, (0..3 * CHUNK + 5).collect::<Vec<_>>());
    }

    fn packed(log: &RecordLog, chunk: usize) -> bool {
        matches!(log.full[chunk].as_ref(), Sealed::Packed { .. })
    }

    #[test]
    fn reads_from_any_index_cross_chunk_boundaries_in_order() {
        let len = 2 * CHUNK + 5;
        let log = numbered(len);
        assert_eq!(log.len(), len);
        assert!(packed(&log, 0) && packed(&log, 1));
        for start in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, len - 1, len] {
            assert_eq!(
                read(&log, start),
                (start..len).collect::<Vec<_>>(),
                "{start}"
            );
        }
        assert!(read(&log, len + 1).is_empty());
        assert!(read(&numbered(2 * CHUNK), 2 * CHUNK).is_empty());
        assert!(read(&RecordLog::default(), 0).is_empty());
    }

    #[test]
    fn appends_never_move_a_full_chunk() {
        let mut log = numbered(CHUNK);
        let first = log.slices(0, usize::MAX).next().expect("a record").as_ptr();
        let handle = Arc::as_ptr(&log.full[0]);
        log.extend(numbered(10 * CHUNK).records_from(0));
        assert_eq!(
            Arc::as_ptr(&log.full[0]),
            handle,
            "the first chunk stayed in place"
        );
        assert_eq!(
            log.slices(0, usize::MAX).next().expect("a record").as_ptr(),
            first
        );
        assert_eq!(log.len(), 11 * CHUNK);
    }

    #[test]
    fn a_prefix_shares_the_full_chunks_and_grows_on_its_own() {
        let log = numbered(3 * CHUNK + 7);
        for n in [0, 5, CHUNK, CHUNK + 3, 3 * CHUNK + 7, 10 * CHUNK] {
            let prefix = log.prefix(n).expect("resident");
            let n = n.min(log.len());
            assert_eq!(read(&prefix, 0), (0..n).collect::<Vec<_>>(), "{n}");
            for (mine, theirs) in prefix.full.iter().zip(&log.full) {
                assert!(
                    Arc::ptr_eq(mine, theirs),
                    "full chunks are shared, not copied"
                );
            }
        }
        let mut fork = log.prefix(CHUNK + 3).expect("resident");
        fork.extend([Bytes::from("x")]);
        assert_eq!(fork.len(), CHUNK + 4);
        assert_eq!(log.len(), 3 * CHUNK + 7, "the source is untouched");
        assert_eq!(fork.slices(CHUNK + 3, usize::MAX).next().expect("x"), b"x");
    }

    #[test]
    fn packed_records_keep_their_bounds_empty_ones_too() {
        // Records of 0, 1, 2, ... bytes (cycling), so a wrong bound shows as a wrong length.
        let records: Vec<Bytes> = (0..CHUNK + 2)
            .map(|i| Bytes::from(vec![(i % 251) as u8; i % 7]))
            .collect();
        let log = RecordLog::from(records.clone());
        assert!(packed(&log, 0));
        let slices: Vec<&[u8]> = log.slices(0, usize::MAX).collect();
        let handles: Vec<Bytes> = log.records_from(0).collect();
        assert_eq!(slices.len(), records.len());
        for (i, want) in records.iter().enumerate() {
            assert_eq!(slices[i], &want[..], "record {i}");
            assert_eq!(handles[i], want, "record {i}");
        }
    }

    #[test]
    fn a_chunk_of_large_records_keeps_a_handle_per_record() {
        let big = Bytes::from(vec![7u8; PACK_MAX_BYTES / CHUNK + 1]);
        let log = RecordLog::from(vec![big.clone(); CHUNK]);
        assert!(matches!(log.full[0].as_ref(), Sealed::Handles(_)));
        let first = log.records_from(0).next().expect("a record");
        assert_eq!(first.as_ptr(), big.as_ptr(), "not copied");
        assert_eq!(log.contiguous(0, 2), None);
    }

    #[test]
    fn consecutive_records_of_one_packed_chunk_are_one_slice() {
        let log = numbered(2 * CHUNK + 3);
        let joined = |start: usize, count: usize| -> Vec<u8> {
            log.slices(start, count).flatten().copied().collect()
        };
        for (start, count) in [
            (0, 1),
            (0, CHUNK),
            (5, 100),
            (CHUNK, 10),
            (2 * CHUNK - 1, 1),
        ] {
            let slice = log
                .contiguous(start, count)
                .expect("within one packed chunk");
            assert_eq!(&slice[..], &joined(start, count)[..], "{start}+{count}");
        }
        // Across two chunks, in the tail, or nothing at all: no single slice.
        assert_eq!(log.contiguous(CHUNK - 1, 2), None);
        assert_eq!(log.contiguous(2 * CHUNK, 1), None);
        assert_eq!(log.contiguous(0, 0), None);
        assert_eq!(log.contiguous(3 * CHUNK, 1), None);
    }

    /// Two packed chunks, one too large to pack, and a tail.
    fn mixed() -> RecordLog {
        let mut log = numbered(2 * CHUNK);
        log.extend(vec![
            Bytes::from(vec![b'x'; PACK_MAX_BYTES / CHUNK + 1]);
            CHUNK
        ]);
        log.extend(numbered(5).records_from(0));
        assert!(packed(&log, 0) && packed(&log, 1) && !packed(&log, 2));
        log
    }

    #[test]
    fn concatenated_ranges_hold_their_records_bytes() {
        let log = mixed();
        let len = log.len();
        for start in [
            0,
            1,
            CHUNK - 1,
            CHUNK,
            2 * CHUNK - 1,
            3 * CHUNK,
            len - 1,
            len,
            len + 3,
        ] {
            for count in [0, 1, 2, CHUNK, CHUNK + 1, 3 * CHUNK, len] {
                let mut joined = BytesMut::new();
                log.concat_into(start, count, &mut joined);
                let each: Vec<u8> = log.slices(start, count).flatten().copied().collect();
                assert_eq!(&joined[..], &each[..], "{start}+{count}");
            }
        }
    }

    #[test]
    fn extents_are_what_counting_record_by_record_gives() {
        let log = mixed();
        let len = log.len();
        let by_record = |start: usize, max_records: usize, max_bytes: usize| {
            let (mut count, mut bytes) = (0, 0);
            for data in log.slices(start, usize::MAX) {
                if count >= max_records || (count > 0 && bytes + data.len() > max_bytes) {
                    break;
                }
                bytes += data.len();
                count += 1;
            }
            (count, bytes)
        };
        for start in [
            0,
            3,
            CHUNK - 1,
            CHUNK,
            2 * CHUNK - 2,
            2 * CHUNK,
            3 * CHUNK,
            len - 1,
            len,
        ] {
            for max_records in [1, 2, 100, CHUNK, CHUNK + 7, len] {
                for max_bytes in [0, 1, 2, 50, 300, 1_000, 5_000, 100_000, usize::MAX] {
                    assert_eq!(
                        log.extent(start, max_records, max_bytes),
                        by_record(start, max_records, max_bytes),
                        "{start} {max_records} {max_bytes}"
                    );
                }
            }
        }
    }

    #[test]
    fn slices_walked_or_folded_give_the_same_records() {
        let log = mixed();
        let len = log.len();
        for start in [
            0,
            1,
            CHUNK - 1,
            CHUNK,
            2 * CHUNK + 5,
            3 * CHUNK,
            len - 1,
            len,
            len + 1,
        ] {
            for count in [0, 1, 3, CHUNK - 1, CHUNK, 2 * CHUNK + 1, usize::MAX] {
                let walked: Vec<&[u8]> = log.slices(start, count).by_ref().collect();
                let folded = log
                    .slices(start, count)
                    .fold(Vec::new(), |mut all, record| {
                        all.push(record);
                        all
                    });
                let handles: Vec<Bytes> = log.records_from(start).take(count).collect();
                assert_eq!(walked, folded, "{start}+{count}");
                assert_eq!(walked.len(), handles.len(), "{start}+{count}");
                for (slice, handle) in walked.iter().zip(&handles) {
                    assert_eq!(*slice, &handle[..], "{start}+{count}");
                }
            }
        }
    }
}
