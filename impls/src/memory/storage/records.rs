//! A stream's records in fixed-size chunks.
//!
//! One `Vec` of every record would, each time it doubles, copy all the records held so far
//! while the storage's lock is held (a stream of millions of records stalled every writer for
//! tens to hundreds of milliseconds at each doubling). Here a full chunk is never moved again,
//! so an append copies at most one chunk's worth, and a fork shares its source's full chunks
//! instead of copying their records.

use std::sync::Arc;

use bytes::Bytes;

/// Records per chunk: 128 KiB of `Bytes` handles, large enough that the chunk list of a stream
/// of millions stays small, small enough that sealing one is cheap.
const CHUNK: usize = 4096;

#[derive(Clone, Debug, Default)]
pub(super) struct RecordLog {
    /// Chunks of exactly [`CHUNK`] records, never changed again, shared with forks.
    full: Vec<Arc<[Bytes]>>,
    /// The records after the full chunks (fewer than [`CHUNK`]).
    tail: Vec<Bytes>,
}

impl RecordLog {
    pub(super) fn len(&self) -> usize {
        self.full.len() * CHUNK + self.tail.len()
    }

    pub(super) fn push(&mut self, record: Bytes) {
        self.tail.push(record);
        if self.tail.len() == CHUNK {
            let sealed = std::mem::take(&mut self.tail);
            self.full.push(Arc::from(sealed));
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

    /// The records from index `start` on, in order (none if `start` is past the end).
    pub(super) fn iter_from(&self, start: usize) -> impl Iterator<Item = &Bytes> + '_ {
        let within = start % CHUNK;
        self.chunks()
            .skip(start / CHUNK)
            .enumerate()
            .flat_map(move |(i, chunk)| {
                let from = if i == 0 { within } else { 0 };
                chunk.get(from..).unwrap_or_default()
            })
    }

    /// The first `n` records (all of them if `n` is past the end) as a log of their own, which
    /// shares this one's full chunks.
    pub(super) fn prefix(&self, n: usize) -> RecordLog {
        let n = n.min(self.len());
        let whole = n / CHUNK;
        let mut prefix = RecordLog {
            full: self.full[..whole].to_vec(),
            tail: Vec::new(),
        };
        prefix.extend(self.iter_from(whole * CHUNK).take(n % CHUNK).cloned());
        prefix
    }

    fn chunks(&self) -> impl Iterator<Item = &[Bytes]> + '_ {
        self.full
            .iter()
            .map(|chunk| &chunk[..])
            .chain(std::iter::once(&self.tail[..]))
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
        log.iter_from(start)
            .map(|b| {
                std::str::from_utf8(b)
                    .expect("utf8")
                    .parse()
                    .expect("number")
            })
            .collect()
    }

    #[test]
    fn reads_from_any_index_cross_chunk_boundaries_in_order() {
        let len = 2 * CHUNK + 5;
        let log = numbered(len);
        assert_eq!(log.len(), len);
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
        let first = log.iter_from(0).next().expect("a record").as_ptr();
        let handle = log.full[0].as_ptr();
        log.extend(numbered(10 * CHUNK).iter_from(0).cloned());
        assert_eq!(
            log.full[0].as_ptr(),
            handle,
            "the first chunk stayed in place"
        );
        assert_eq!(log.iter_from(0).next().expect("a record").as_ptr(), first);
        assert_eq!(log.len(), 11 * CHUNK);
    }

    #[test]
    fn a_prefix_shares_the_full_chunks_and_grows_on_its_own() {
        let log = numbered(3 * CHUNK + 7);
        for n in [0, 5, CHUNK, CHUNK + 3, 3 * CHUNK + 7, 10 * CHUNK] {
            let prefix = log.prefix(n);
            let n = n.min(log.len());
            assert_eq!(read(&prefix, 0), (0..n).collect::<Vec<_>>(), "{n}");
            for (mine, theirs) in prefix.full.iter().zip(&log.full) {
                assert!(
                    Arc::ptr_eq(mine, theirs),
                    "full chunks are shared, not copied"
                );
            }
        }
        let mut fork = log.prefix(CHUNK + 3);
        fork.extend([Bytes::from("x")]);
        assert_eq!(fork.len(), CHUNK + 4);
        assert_eq!(log.len(), 3 * CHUNK + 7, "the source is untouched");
        assert_eq!(&fork.iter_from(CHUNK + 3).next().expect("x")[..], b"x");
    }
}
