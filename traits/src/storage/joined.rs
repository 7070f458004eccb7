//! Reads answered as one body: [`StreamStorage::read_joined`](super::StreamStorage::read_joined)'s
//! start, joining and result.

use bytes::{BufMut, Bytes, BytesMut};

use super::names::Offset;
use super::types::{ReadBatch, StreamInfo};

/// Where a [`read_joined`](super::StreamStorage::read_joined) starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadFrom {
    /// The first record.
    Start,
    /// After this offset, as [`read`](super::StreamStorage::read) from it.
    After(Offset),
    /// The tail at one instant: the batch is empty and up to date, its next offset is the
    /// tail (what a client reads from to get only what comes later). It still counts as a read
    /// (it resets an idle TTL).
    Tail,
}

impl From<Option<Offset>> for ReadFrom {
    /// `None` is the start, as for [`read`](super::StreamStorage::read).
    fn from(offset: Option<Offset>) -> ReadFrom {
        offset.map_or(ReadFrom::Start, ReadFrom::After)
    }
}

/// How a read's records are joined into one body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Joining {
    /// The records' bytes back to back.
    Concat,
    /// A JSON array of the records, each one JSON value: `[a,b]`, `[]` for none.
    JsonArray,
}

impl Joining {
    /// The body of `records` (`bytes` is the sum of their lengths, to size the buffer once).
    pub fn join<'a>(self, records: impl IntoIterator<Item = &'a [u8]>, bytes: usize) -> Bytes {
        let mut records = records.into_iter();
        match self {
            Joining::Concat => {
                let Some(first) = records.next() else {
                    return Bytes::new();
                };
                let mut out = BytesMut::with_capacity(bytes);
                out.put_slice(first);
                records.for_each(|record| out.put_slice(record));
                out.freeze()
            }
            Joining::JsonArray => {
                // Brackets and at most one comma per record.
                let mut out = BytesMut::with_capacity(bytes + 2 + records.size_hint().0);
                out.put_u8(b'[');
                if let Some(first) = records.next() {
                    out.put_slice(first);
                }
                // `for_each`, not a `for` loop: an iterator that walks its records in chunks
                // (the memory storage's) does so in `fold`.
                records.for_each(|record| {
                    out.put_u8(b',');
                    out.put_slice(record);
                });
                out.put_u8(b']');
                out.freeze()
            }
        }
    }
}

/// Picks how a stream's records are joined, from its content type. A plain function (the
/// rule is a protocol's, fixed per server), so a read can apply it under a storage's lock.
pub type JoiningFor = fn(&str) -> Joining;

/// What a [`read_joined`](super::StreamStorage::read_joined) answers: a
/// [`ReadBatch`] whose records are joined into one body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinedBatch {
    /// The records, joined as the read's [`Joining`] says.
    pub body: Bytes,
    /// How many records the body holds.
    pub records: usize,
    /// The offset after the last record (where the read started if none): read from it next.
    pub next_offset: Offset,
    /// True if the batch reaches the tail (nothing more is stored right now).
    pub up_to_date: bool,
    /// True if the stream is closed and this batch reaches its final offset.
    pub closed: bool,
    /// The stream's content type.
    pub content_type: String,
}

impl JoinedBatch {
    /// The answer to a read from [`ReadFrom::Tail`] at the moment `head` describes: no records,
    /// up to date, the next offset its tail.
    pub fn empty_at_tail(head: StreamInfo, join: JoiningFor) -> JoinedBatch {
        JoinedBatch {
            body: join(&head.content_type).join(std::iter::empty(), 0),
            records: 0,
            next_offset: head.next_offset,
            up_to_date: true,
            closed: head.closed,
            content_type: head.content_type,
        }
    }

    /// Joins a batch read record by record, as `join` says for its content type.
    pub fn from_batch(batch: ReadBatch, join: JoiningFor) -> JoinedBatch {
        let bytes = batch.records.iter().map(|r| r.data.len()).sum();
        let body = join(&batch.content_type).join(batch.records.iter().map(|r| &r.data[..]), bytes);
        JoinedBatch {
            body,
            records: batch.records.len(),
            next_offset: batch.next_offset,
            up_to_date: batch.up_to_date,
            closed: batch.closed,
            content_type: batch.content_type,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(joining: Joining, records: &[&str]) -> Bytes {
        let bytes = records.iter().map(|r| r.len()).sum();
        joining.join(records.iter().map(|r| r.as_bytes()), bytes)
    }

    #[test]
    fn joins() {
        assert_eq!(&joined(Joining::Concat, &[])[..], b"");
        assert_eq!(&joined(Joining::Concat, &["ab", "", "c"])[..], b"abc");
        assert_eq!(&joined(Joining::JsonArray, &[])[..], b"[]");
        assert_eq!(&joined(Joining::JsonArray, &["1"])[..], b"[1]");
        assert_eq!(
            &joined(Joining::JsonArray, &["1", "{}", "\"x\""])[..],
            b"[1,{},\"x\"]"
        );
    }
}
