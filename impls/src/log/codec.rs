//! The journal's operations as bytes: little-endian integers, lengths before strings and
//! byte strings, one tag byte per operation. Frames around them are [`super::frame`]'s.

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use courier_traits::storage::{
    AppendRequest, Expiry, ForkFrom, KeyedRecord, Offset, ProducerStamp, StreamConfig, StreamName,
    SubOffset,
};

use super::frame;
use crate::memory::{Op, ReplayOp};

const CREATE: u8 = 1;
const APPEND: u8 = 2;
const KEYED: u8 = 3;
const REMOVE: u8 = 4;

/// Appends `op` as one frame to `out` (the encoder the log storage gives
/// the memory storage).
pub(super) fn encode_frame(op: &Op<'_>, out: &mut Vec<u8>) {
    frame::write(out, |body| encode(op, body));
}

fn encode(op: &Op<'_>, out: &mut Vec<u8>) {
    let mut w = Writer(out);
    match op {
        Op::Create {
            name,
            config,
            initial,
            now_ms,
        } => {
            w.u8(CREATE);
            w.str(name.as_str());
            w.u64(*now_ms);
            w.opt_str(config.content_type.as_deref());
            w.expiry(config.expiry);
            w.bool(config.closed);
            match &config.fork {
                None => w.u8(0),
                Some(fork) => {
                    w.u8(1);
                    w.str(fork.source.as_str());
                    w.opt_str(fork.offset.as_ref().map(Offset::as_str));
                    match fork.sub_offset {
                        SubOffset::None => w.u8(0),
                        SubOffset::Records(n) => {
                            w.u8(1);
                            w.u64(n);
                        }
                        SubOffset::Bytes(n) => {
                            w.u8(2);
                            w.u64(n);
                        }
                    }
                }
            }
            w.records(initial);
        }
        Op::Append {
            name,
            request,
            now_ms,
        } => {
            w.u8(APPEND);
            w.str(name.as_str());
            w.u64(*now_ms);
            w.records(&request.records);
            w.opt_str(request.content_type.as_deref());
            w.bool(request.close);
            match &request.producer {
                None => w.u8(0),
                Some(stamp) => {
                    w.u8(1);
                    w.str(&stamp.id);
                    w.u64(stamp.epoch);
                    w.u64(stamp.seq);
                }
            }
            w.opt_str(request.writer_seq.as_deref());
        }
        Op::Keyed {
            name,
            records,
            window,
            now_ms,
        } => {
            w.u8(KEYED);
            w.str(name.as_str());
            w.u64(*now_ms);
            w.duration(*window);
            w.len(records.len());
            for record in *records {
                w.str(&record.key);
                w.str(&record.tag);
                w.bytes(&record.data);
            }
        }
        Op::Remove { name } => {
            w.u8(REMOVE);
            w.str(name.as_str());
        }
    }
}

/// Reads one operation back from a frame's body (a copy: the records it holds keep no part of
/// the file's buffer alive). `Err` names what is wrong with it.
pub(super) fn decode(body: &[u8]) -> Result<ReplayOp, String> {
    let mut r = Reader { rest: body };
    let op = match r.u8()? {
        CREATE => {
            let name = r.name()?;
            let now_ms = r.u64()?;
            let content_type = r.opt_string()?;
            let expiry = r.expiry()?;
            let closed = r.bool()?;
            let fork = match r.u8()? {
                0 => None,
                1 => {
                    let source = r.name()?;
                    let offset = r
                        .opt_string()?
                        .map(Offset::from_storage)
                        .transpose()
                        .map_err(|e| e.to_string())?;
                    let sub_offset = match r.u8()? {
                        0 => SubOffset::None,
                        1 => SubOffset::Records(r.u64()?),
                        2 => SubOffset::Bytes(r.u64()?),
                        other => return Err(format!("unknown sub-offset kind {other}")),
                    };
                    Some(ForkFrom {
                        source,
                        offset,
                        sub_offset,
                    })
                }
                other => return Err(format!("unknown fork flag {other}")),
            };
            let initial = r.records()?;
            ReplayOp::Create {
                name,
                config: StreamConfig {
                    content_type,
                    expiry,
                    closed,
                    fork,
                },
                initial,
                now_ms,
            }
        }
        APPEND => {
            let name = r.name()?;
            let now_ms = r.u64()?;
            let records = r.records()?;
            let content_type = r.opt_string()?;
            let close = r.bool()?;
            let producer = match r.u8()? {
                0 => None,
                1 => Some(ProducerStamp {
                    id: r.string()?,
                    epoch: r.u64()?,
                    seq: r.u64()?,
                }),
                other => return Err(format!("unknown producer flag {other}")),
            };
            let writer_seq = r.opt_string()?;
            ReplayOp::Append {
                name,
                request: AppendRequest {
                    records,
                    content_type,
                    close,
                    producer,
                    writer_seq,
                },
                now_ms,
            }
        }
        KEYED => {
            let name = r.name()?;
            let now_ms = r.u64()?;
            let window = r.duration()?;
            let count = r.len()?;
            let mut records = Vec::with_capacity(count.min(r.rest.len()));
            for _ in 0..count {
                records.push(KeyedRecord {
                    key: r.string()?,
                    tag: r.string()?,
                    data: r.bytes()?,
                });
            }
            ReplayOp::Keyed {
                name,
                records,
                window,
                now_ms,
            }
        }
        REMOVE => ReplayOp::Remove { name: r.name()? },
        other => return Err(format!("unknown operation {other}")),
    };
    if !r.rest.is_empty() {
        return Err(format!("{} bytes after the operation", r.rest.len()));
    }
    Ok(op)
}

/// The stream an operation's frame body changes, and whether it creates it: what compaction
/// needs to know of a frame (every operation starts with its tag and its stream's name).
pub(super) fn subject(body: &[u8]) -> Result<Subject<'_>, String> {
    let mut r = Reader { rest: body };
    let tag = r.u8()?;
    if !matches!(tag, CREATE | APPEND | KEYED | REMOVE) {
        return Err(format!("unknown operation {tag}"));
    }
    let name = std::str::from_utf8(r.raw()?).map_err(|e| e.to_string())?;
    Ok(Subject {
        name,
        creates: tag == CREATE,
        removes: tag == REMOVE,
    })
}

/// See [`subject`].
#[derive(Debug, PartialEq)]
pub(super) struct Subject<'a> {
    /// The stream's name.
    pub(super) name: &'a str,
    /// Whether the operation creates the stream (starting a new life of the name).
    pub(super) creates: bool,
    /// Whether it removes the stream (or marks it deleted while forks read through it).
    pub(super) removes: bool,
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// A length: records are at most 4 GiB each (the storages' limits are far below).
    fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    fn bytes(&mut self, v: &[u8]) {
        self.len(v.len());
        self.0.extend_from_slice(v);
    }
    fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    fn opt_str(&mut self, v: Option<&str>) {
        match v {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }
    fn records(&mut self, records: &[Bytes]) {
        self.len(records.len());
        for record in records {
            self.bytes(record);
        }
    }
    fn duration(&mut self, d: Duration) {
        self.u64(d.as_secs());
        self.u32(d.subsec_nanos());
    }
    /// Exactly as given (a re-create compares expiries for equality, to the nanosecond).
    fn expiry(&mut self, expiry: Expiry) {
        match expiry {
            Expiry::Never => self.u8(0),
            Expiry::Ttl(ttl) => {
                self.u8(1);
                self.duration(ttl);
            }
            Expiry::At(at) => match at.duration_since(UNIX_EPOCH) {
                Ok(after) => {
                    self.u8(2);
                    self.duration(after);
                }
                Err(before) => {
                    self.u8(3);
                    self.duration(before.duration());
                }
            },
        }
    }
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.rest.len() {
            return Err(format!(
                "{n} bytes expected, {} left in the frame",
                self.rest.len()
            ));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn bool(&mut self) -> Result<bool, String> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("{other} is not a flag")),
        }
    }
    fn u32(&mut self) -> Result<u32, String> {
        let mut b = [0; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let mut b = [0; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    fn len(&mut self) -> Result<usize, String> {
        usize::try_from(self.u32()?).map_err(|e| e.to_string())
    }
    fn raw(&mut self) -> Result<&'a [u8], String> {
        let n = self.len()?;
        self.take(n)
    }
    fn bytes(&mut self) -> Result<Bytes, String> {
        Ok(Bytes::copy_from_slice(self.raw()?))
    }
    fn string(&mut self) -> Result<String, String> {
        String::from_utf8(self.raw()?.to_vec()).map_err(|e| e.to_string())
    }
    fn opt_string(&mut self) -> Result<Option<String>, String> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.string().map(Some),
            other => Err(format!("{other} is not an option flag")),
        }
    }
    fn name(&mut self) -> Result<StreamName, String> {
        let raw = self.raw()?;
        let text = std::str::from_utf8(raw).map_err(|e| e.to_string())?;
        StreamName::new(text).map_err(|e| e.to_string())
    }
    fn records(&mut self) -> Result<Vec<Bytes>, String> {
        let count = self.len()?;
        // Each record takes at least its 4-byte length: a corrupt count cannot reserve more.
        let mut records = Vec::with_capacity(count.min(self.rest.len() / 4));
        for _ in 0..count {
            records.push(self.bytes()?);
        }
        Ok(records)
    }
    fn duration(&mut self) -> Result<Duration, String> {
        let secs = self.u64()?;
        let nanos = self.u32()?;
        if nanos >= 1_000_000_000 {
            return Err(format!("{nanos} nanoseconds is not below a second"));
        }
        Ok(Duration::new(secs, nanos))
    }
    fn expiry(&mut self) -> Result<Expiry, String> {
        match self.u8()? {
            0 => Ok(Expiry::Never),
            1 => Ok(Expiry::Ttl(self.duration()?)),
            2 => UNIX_EPOCH
                .checked_add(self.duration()?)
                .map(Expiry::At)
                .ok_or_else(|| "an expiry past what this system's clock holds".to_owned()),
            3 => UNIX_EPOCH
                .checked_sub(self.duration()?)
                .map(Expiry::At)
                .ok_or_else(|| "an expiry before what this system's clock holds".to_owned()),
            other => Err(format!("unknown expiry kind {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(op: &Op<'_>) -> ReplayOp {
        let mut body = Vec::new();
        encode(op, &mut body);
        decode(&body).expect("decodes")
    }

    #[test]
    fn every_operation_reads_back_as_written() {
        let name = StreamName::new("orders/eu").expect("valid");
        let config = StreamConfig {
            content_type: Some("application/json".into()),
            expiry: Expiry::At(UNIX_EPOCH + Duration::new(1_900_000_000, 123_456_789)),
            closed: true,
            fork: Some(ForkFrom {
                source: StreamName::new("src").expect("valid"),
                offset: Some(Offset::from_hex_pair(0, 42)),
                sub_offset: SubOffset::Bytes(7),
            }),
        };
        let initial = vec![Bytes::from("a"), Bytes::new(), Bytes::from(vec![0u8; 300])];
        assert_eq!(
            round_trip(&Op::Create {
                name: &name,
                config: &config,
                initial: &initial,
                now_ms: 99,
            }),
            ReplayOp::Create {
                name: name.clone(),
                config: config.clone(),
                initial: initial.clone(),
                now_ms: 99,
            }
        );
        let before_1970 = StreamConfig {
            expiry: Expiry::At(UNIX_EPOCH - Duration::from_secs(5)),
            ..StreamConfig::default()
        };
        let ttl = StreamConfig {
            expiry: Expiry::Ttl(Duration::from_millis(1500)),
            ..StreamConfig::default()
        };
        for config in [before_1970, ttl, StreamConfig::default()] {
            let back = round_trip(&Op::Create {
                name: &name,
                config: &config,
                initial: &[],
                now_ms: 1,
            });
            assert!(matches!(back, ReplayOp::Create { config: c, .. } if c == config));
        }
        let request = AppendRequest::records(initial.clone())
            .with_content_type("text/plain")
            .with_producer(ProducerStamp::new("p-1", 3, 9).expect("valid"))
            .with_writer_seq("0007")
            .and_close();
        assert_eq!(
            round_trip(&Op::Append {
                name: &name,
                request: &request,
                now_ms: u64::MAX,
            }),
            ReplayOp::Append {
                name: name.clone(),
                request: request.clone(),
                now_ms: u64::MAX,
            }
        );
        let records = vec![
            KeyedRecord::new("k1", "t1", "one").expect("valid"),
            KeyedRecord::new("k2", "", Bytes::new()).expect("valid"),
        ];
        assert_eq!(
            round_trip(&Op::Keyed {
                name: &name,
                records: &records,
                window: Duration::new(3600, 5),
                now_ms: 7,
            }),
            ReplayOp::Keyed {
                name: name.clone(),
                records,
                window: Duration::new(3600, 5),
                now_ms: 7,
            }
        );
        assert_eq!(
            round_trip(&Op::Remove { name: &name }),
            ReplayOp::Remove { name }
        );
    }

    #[test]
    fn a_damaged_body_is_an_error_naming_the_fault_never_a_panic() {
        let name = StreamName::new("s").expect("valid");
        let request = AppendRequest::record("payload").with_writer_seq("1");
        let mut body = Vec::new();
        encode(
            &Op::Append {
                name: &name,
                request: &request,
                now_ms: 5,
            },
            &mut body,
        );
        // Every truncation, and a byte too many, is refused.
        for cut in 0..body.len() {
            assert!(decode(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = body.clone();
        longer.push(0);
        assert!(
            decode(&longer)
                .expect_err("too long")
                .contains("after the operation")
        );
        assert!(
            decode(&[9])
                .expect_err("unknown")
                .contains("unknown operation 9")
        );
        // A record count far beyond the bytes present reserves nothing and fails.
        let mut huge = vec![APPEND];
        huge.extend_from_slice(&1u32.to_le_bytes());
        huge.push(b's');
        huge.extend_from_slice(&0u64.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).is_err());
    }

    #[test]
    fn every_operation_names_its_stream_and_whether_it_creates_or_removes_it() {
        let name = StreamName::new("a/b").expect("valid");
        let request = AppendRequest::record("x");
        let records = [KeyedRecord {
            key: "k".into(),
            tag: "t".into(),
            data: Bytes::from("d"),
        }];
        let ops = [
            Op::Create {
                name: &name,
                config: &StreamConfig::default(),
                initial: &[],
                now_ms: 1,
            },
            Op::Append {
                name: &name,
                request: &request,
                now_ms: 2,
            },
            Op::Keyed {
                name: &name,
                records: &records,
                window: Duration::from_secs(1),
                now_ms: 3,
            },
            Op::Remove { name: &name },
        ];
        for (i, op) in ops.iter().enumerate() {
            let mut body = Vec::new();
            encode(op, &mut body);
            let subject = subject(&body).expect("a subject");
            assert_eq!(subject.name, "a/b");
            assert_eq!(subject.creates, i == 0, "{op:?}");
            assert_eq!(subject.removes, i == 3, "{op:?}");
        }
        assert!(subject(&[9, 0, 0, 0, 0]).is_err(), "an unknown tag");
        assert!(
            subject(&[CREATE, 5, 0, 0, 0, b'a']).is_err(),
            "a name cut short"
        );
    }
}
