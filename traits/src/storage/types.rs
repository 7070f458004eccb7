//! Requests and results of [`StreamStorage`](super::StreamStorage).

use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::names::{Offset, StreamName};
use crate::error::InvalidInput;

/// Largest producer epoch or sequence number (2^53 - 1, so it survives a JSON number).
pub const MAX_PRODUCER_NUMBER: u64 = (1 << 53) - 1;

/// When a stream expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Expiry {
    /// Never.
    #[default]
    Never,
    /// After this long without a read or an append (a sliding idle window; `head` does not reset it).
    Ttl(Duration),
    /// At this instant, whatever happens before.
    At(SystemTime),
}

/// Which part of a source a fork inherits beyond `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SubOffset {
    /// Nothing beyond the fork offset.
    #[default]
    None,
    /// This many whole records past the fork offset (JSON streams: messages).
    Records(u64),
    /// This many bytes past the fork offset; a record cut in the middle is inherited truncated.
    Bytes(u64),
}

/// Creates a stream as a fork of another: the fork's reads see the source's records up to the
/// fork point, then the fork's own appends. Later source appends are invisible to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForkFrom {
    /// The source stream.
    pub source: StreamName,
    /// The fork point; `None` = the source's tail at creation.
    pub offset: Option<Offset>,
    /// How far past `offset` the fork point lies.
    pub sub_offset: SubOffset,
}

/// The configuration a stream is created with. Creating an existing stream with an equal
/// configuration succeeds; a different one is a conflict.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct StreamConfig {
    /// The stream's content type, as the caller normalised it. `None` = inherit from the fork
    /// source, or `application/octet-stream` without one.
    pub content_type: Option<String>,
    /// When the stream expires. A fork with [`Expiry::Never`] inherits its source's expiry.
    pub expiry: Expiry,
    /// Create the stream already closed (its initial records are then all it will ever hold).
    pub closed: bool,
    /// Create as a fork of another stream.
    pub fork: Option<ForkFrom>,
}

impl StreamConfig {
    /// A plain open stream with this content type.
    pub fn with_content_type(content_type: impl Into<String>) -> StreamConfig {
        StreamConfig {
            content_type: Some(content_type.into()),
            ..StreamConfig::default()
        }
    }
}

/// The default content type of a stream created without one.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// A stream's current metadata, as `create` and `head` return it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamInfo {
    /// The stream.
    pub name: StreamName,
    /// Its content type, as stored.
    pub content_type: String,
    /// Its expiry (the configured TTL window, not the time remaining).
    pub expiry: Expiry,
    /// The offset after the last record (the tail).
    pub next_offset: Offset,
    /// True once the stream is closed; closing is permanent.
    pub closed: bool,
}

/// What `create` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateOutcome {
    /// A new stream was created.
    Created(StreamInfo),
    /// The stream already existed with the same configuration; nothing changed.
    AlreadyExists(StreamInfo),
}

impl CreateOutcome {
    /// The stream's metadata either way.
    pub fn info(&self) -> &StreamInfo {
        match self {
            CreateOutcome::Created(info) | CreateOutcome::AlreadyExists(info) => info,
        }
    }
}

/// Identifies one write of an idempotent producer (Kafka-style id, epoch, sequence).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProducerStamp {
    /// The producer's id (non-empty).
    pub id: String,
    /// Its epoch; a higher epoch fences off older sessions of the same id.
    pub epoch: u64,
    /// The sequence number of this write within the epoch, starting at 0.
    pub seq: u64,
}

impl ProducerStamp {
    /// Validates a stamp: non-empty id, numbers at most [`MAX_PRODUCER_NUMBER`].
    pub fn new(id: impl Into<String>, epoch: u64, seq: u64) -> Result<ProducerStamp, InvalidInput> {
        let id = id.into();
        if id.is_empty() {
            return Err(InvalidInput::new("producer id", &id, "must not be empty"));
        }
        for (field, n) in [("producer epoch", epoch), ("producer seq", seq)] {
            if n > MAX_PRODUCER_NUMBER {
                return Err(InvalidInput::new(field, &n.to_string(), "exceeds 2^53-1"));
            }
        }
        Ok(ProducerStamp { id, epoch, seq })
    }
}

/// One append: records, and what must hold for them to commit (all or nothing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppendRequest {
    /// The records to append, in order. Empty only when `close` is set.
    pub records: Vec<Bytes>,
    /// If set, must equal the stream's content type (the caller normalises both).
    pub content_type: Option<String>,
    /// Close the stream in the same atomic step, after the records.
    pub close: bool,
    /// Idempotent-producer stamp: the storage deduplicates and fences by it.
    pub producer: Option<ProducerStamp>,
    /// Writer coordination: must sort bytewise above the last accepted value for this stream.
    pub writer_seq: Option<String>,
}

impl AppendRequest {
    /// Appends one record.
    pub fn record(data: impl Into<Bytes>) -> AppendRequest {
        AppendRequest {
            records: vec![data.into()],
            ..AppendRequest::default()
        }
    }

    /// Appends several records atomically.
    pub fn records(records: Vec<Bytes>) -> AppendRequest {
        AppendRequest {
            records,
            ..AppendRequest::default()
        }
    }

    /// Closes the stream without appending.
    pub fn close_only() -> AppendRequest {
        AppendRequest {
            close: true,
            ..AppendRequest::default()
        }
    }

    /// Also closes the stream, atomically with the records.
    pub fn and_close(mut self) -> AppendRequest {
        self.close = true;
        self
    }

    /// Stamps the append as a write of an idempotent producer.
    pub fn with_producer(mut self, stamp: ProducerStamp) -> AppendRequest {
        self.producer = Some(stamp);
        self
    }

    /// Requires the stream's content type to be `content_type`.
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> AppendRequest {
        self.content_type = Some(content_type.into());
        self
    }

    /// Sets the writer sequence (`Stream-Seq`).
    pub fn with_writer_seq(mut self, seq: impl Into<String>) -> AppendRequest {
        self.writer_seq = Some(seq.into());
        self
    }
}

/// A producer's state after an append: the highest accepted sequence of its current epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerAck {
    /// The producer's current epoch.
    pub epoch: u64,
    /// The highest sequence accepted in that epoch.
    pub seq: u64,
}

/// What an append did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendOutcome {
    /// The tail after the append.
    pub next_offset: Offset,
    /// The offset of the first appended record (`None` for close-only and duplicates).
    pub first_offset: Option<Offset>,
    /// True if the stream is closed after this append.
    pub closed: bool,
    /// True if this was a producer retry already applied: nothing was written again.
    pub duplicate: bool,
    /// The producer's state, for stamped appends.
    pub producer: Option<ProducerAck>,
}

/// Bounds on one read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimits {
    /// At most this many records.
    pub max_records: usize,
    /// At most about this many bytes: records are added while the total stays within it,
    /// but the first record is always returned whole, however large.
    pub max_bytes: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_records: 10_000,
            max_bytes: 4 << 20,
        }
    }
}

/// One stored record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The position just before this record: reading from it returns this record first.
    pub offset: Offset,
    /// The record's bytes.
    pub data: Bytes,
}

/// The result of a read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadBatch {
    /// The records after the requested offset, in order.
    pub records: Vec<Record>,
    /// The offset after the last returned record (the requested offset if none): read from it next.
    pub next_offset: Offset,
    /// True if the batch reaches the tail (nothing more is stored right now).
    pub up_to_date: bool,
    /// True if the stream is closed and this batch reaches its final offset.
    pub closed: bool,
    /// The stream's content type.
    pub content_type: String,
}

/// Why `wait` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitOutcome {
    /// Data exists after the offset.
    Ready,
    /// The stream is closed and nothing lies after the offset: no more data will come.
    Closed,
    /// The timeout passed with nothing new.
    TimedOut,
}

/// What a storage promises, as data: the universal suite runs the cases each flag promises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct StorageCapabilities {
    /// Acknowledged appends survive a restart of the process or server.
    pub durable: bool,
    /// Several instances on one backend act as one (appends through one wake waits on another).
    pub shared: bool,
    /// Expiry by TTL and absolute time.
    pub ttl: bool,
    /// Idempotent producers (dedup, epochs, gap detection).
    pub producers: bool,
    /// Forks.
    pub forks: bool,
    /// Keeps working across a restart of its backend server without being recreated.
    pub survives_restart: bool,
    /// Keyed appends ([`append_keyed`](super::StreamStorage::append_keyed)): durable dedup
    /// by key, atomic with the records.
    pub keyed_append: bool,
    /// Largest single record accepted, if limited.
    pub max_record_bytes: Option<usize>,
}

impl StorageCapabilities {
    /// All flags false, no limit; set what the storage promises.
    pub const NONE: StorageCapabilities = StorageCapabilities {
        durable: false,
        shared: false,
        ttl: false,
        producers: false,
        forks: false,
        survives_restart: false,
        keyed_append: false,
        max_record_bytes: None,
    };
}
