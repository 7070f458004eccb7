//! The streams checker's model: the operations and their results, and the [`StreamsApi`] a
//! test implements over its service.

use async_trait::async_trait;

use crate::checker::history::Outcome;

/// How many stream configurations creates choose from. The test maps each to headers; they
/// must differ, so a create with the other one is a conflict (config 0: JSON, no expiry;
/// config 1: JSON with a TTL).
pub const STREAM_CONFIGS: usize = 2;

/// An idempotent producer's stamp (`Producer-Id`, `Producer-Epoch`, `Producer-Seq`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProducerStamp {
    /// Producer id.
    pub id: String,
    /// Epoch.
    pub epoch: u64,
    /// Sequence number within the epoch.
    pub seq: u64,
}

/// One operation on a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamOp {
    /// PUT: create `stream` with configuration `config` and the initial record `init`.
    Create {
        /// Stream name.
        stream: String,
        /// Index below [`STREAM_CONFIGS`].
        config: usize,
        /// Id of the initial record.
        init: String,
    },
    /// POST: append one record, plain or stamped by an idempotent producer.
    Append {
        /// Stream name.
        stream: String,
        /// The record's id.
        record: String,
        /// The producer stamp, for idempotent appends.
        producer: Option<ProducerStamp>,
    },
    /// GET from the start (`None`) or from an offset, following pages to the tail.
    Read {
        /// Stream name.
        stream: String,
        /// Offset to read after (`None`: from the start).
        from: Option<String>,
    },
    /// POST `Stream-Closed: true` without data.
    Close {
        /// Stream name.
        stream: String,
    },
    /// DELETE.
    Delete {
        /// Stream name.
        stream: String,
    },
    /// PUT `Stream-Forked-From: source` at the source's tail.
    Fork {
        /// The new stream's name.
        stream: String,
        /// The source stream.
        source: String,
    },
}

impl StreamOp {
    /// The stream the operation acts on.
    pub fn stream(&self) -> &str {
        match self {
            StreamOp::Create { stream, .. }
            | StreamOp::Append { stream, .. }
            | StreamOp::Read { stream, .. }
            | StreamOp::Close { stream }
            | StreamOp::Delete { stream }
            | StreamOp::Fork { stream, .. } => stream,
        }
    }

    /// True for operations that change the stream.
    pub fn writes(&self) -> bool {
        !matches!(self, StreamOp::Read { .. })
    }
}

/// What a read saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadResult {
    /// Record ids, in stream order.
    pub records: Vec<String>,
    /// `Stream-Next-Offset` of the last page.
    pub next_offset: String,
    /// The stream is closed.
    pub closed: bool,
}

/// The result of an `ok` operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamRet {
    /// A create answered 201 (`created`) or 200 (it existed with the same configuration).
    Created {
        /// 201.
        created: bool,
    },
    /// An append was acknowledged.
    Appended {
        /// `Stream-Next-Offset`: the offset right after this record.
        next_offset: String,
        /// 204 to a producer's data: an earlier attempt already wrote it.
        duplicate: bool,
    },
    /// A read: the stream's records, or `None` for 404.
    Read(Option<ReadResult>),
    /// Close, delete or fork succeeded.
    Done,
}

/// The service under test, as the workload calls it. The implementation must record unclear
/// results honestly: a timeout, a lost connection or a 5xx after the request was sent is
/// [`Outcome::Info`]; only a refusal (4xx) or a request that never left is [`Outcome::Fail`].
#[async_trait]
pub trait StreamsApi: Send + Sync {
    /// How many service nodes there are (operations pick one at random).
    fn nodes(&self) -> usize;
    /// Runs `op` through node `node`.
    async fn call(&self, node: usize, op: &StreamOp) -> Outcome<StreamRet>;
}
