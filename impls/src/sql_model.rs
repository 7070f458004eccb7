//! The stream row every SQL storage keeps (SQLite, Postgres), and the pure decisions made on
//! it: expiry, TTL touches, idempotent-create comparison. Only the SQL differs per database.

use std::future::Future;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use courier_traits::clock::Clock;
use courier_traits::storage::{
    CreateOutcome, Expiry, ForkFrom, Offset, ProducerStamp, ReadBatch, ReadLimits, Record,
    StorageError, StreamConfig, StreamInfo, StreamName, SubOffset, WaitOutcome,
};
use futures::{Stream, TryStreamExt};

use crate::rules::{ForkSource, index_offset};
use crate::wakers::Wakers;

/// Milliseconds since the Unix epoch on `clock`, as the rows store them. Every expiry decision
/// of a storage reads the time here, from the clock its configuration names.
pub(crate) fn now_ms(clock: &dyn Clock) -> i64 {
    i64::try_from(clock.now_ms()).unwrap_or(i64::MAX)
}

/// Expiry as stored: (kind, milliseconds): 0 never, 1 TTL window, 2 absolute Unix time.
pub(crate) fn encode_expiry(expiry: Expiry) -> (i64, i64) {
    match expiry {
        Expiry::Never => (0, 0),
        Expiry::Ttl(ttl) => (1, ttl.as_millis().min(i64::MAX as u128) as i64),
        Expiry::At(at) => (
            2,
            at.duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or_default(),
        ),
    }
}

fn decode_expiry(kind: i64, ms: i64) -> Expiry {
    let ms = Duration::from_millis(ms.max(0) as u64);
    match kind {
        1 => Expiry::Ttl(ms),
        2 => Expiry::At(UNIX_EPOCH + ms),
        _ => Expiry::Never,
    }
}

/// The parts of a create request that must match for an idempotent re-create (besides the
/// content type and closed flag, compared against the stream's current values), as text.
/// Times compare at millisecond precision, the precision they are stored at.
pub(crate) fn requested_key(config: &StreamConfig) -> String {
    let (kind, ms) = encode_expiry(config.expiry);
    let fork = match &config.fork {
        None => String::from("-"),
        Some(ForkFrom {
            source,
            offset,
            sub_offset,
        }) => {
            let sub = match sub_offset {
                SubOffset::None => String::from("none"),
                SubOffset::Records(n) => format!("records:{n}"),
                SubOffset::Bytes(n) => format!("bytes:{n}"),
            };
            let offset = offset.as_ref().map(|o| o.as_str()).unwrap_or("-");
            format!("{source}\n{offset}\n{sub}")
        }
    };
    format!("{kind}:{ms}\n{fork}")
}

/// A row of `courier_streams`.
#[derive(Clone)]
pub(crate) struct StreamRow {
    pub(crate) content_type: String,
    pub(crate) expiry_kind: i64,
    pub(crate) expiry_ms: i64,
    pub(crate) requested: String,
    pub(crate) closed: bool,
    pub(crate) closed_by: Option<ProducerStamp>,
    pub(crate) writer_seq: Option<String>,
    pub(crate) next_index: u64,
    pub(crate) last_access_ms: i64,
    pub(crate) soft_deleted: bool,
}

#[cfg(test)]
impl StreamRow {
    /// An open `text/plain` stream without expiry, writer sequence or producer close, whose
    /// tail is `next_index`: the unit tests' starting row.
    pub(crate) fn open_text(next_index: u64) -> StreamRow {
        StreamRow {
            content_type: "text/plain".into(),
            expiry_kind: 0,
            expiry_ms: 0,
            requested: String::new(),
            closed: false,
            closed_by: None,
            writer_seq: None,
            next_index,
            last_access_ms: 0,
            soft_deleted: false,
        }
    }
}

impl StreamRow {
    pub(crate) fn expiry(&self) -> Expiry {
        decode_expiry(self.expiry_kind, self.expiry_ms)
    }

    pub(crate) fn is_expired(&self, now_ms: i64) -> bool {
        match self.expiry_kind {
            1 => now_ms - self.last_access_ms >= self.expiry_ms,
            2 => now_ms >= self.expiry_ms,
            _ => false,
        }
    }

    /// Whether a read should refresh `last_access_ms`: only for TTL streams, and at most about
    /// ten times per window, so reads stay reads.
    pub(crate) fn needs_touch(&self, now_ms: i64) -> bool {
        self.expiry_kind == 1
            && now_ms - self.last_access_ms >= (self.expiry_ms / 10).clamp(1, 1000)
    }

    /// This stream as a fork source.
    pub(crate) fn as_fork_source(&self) -> ForkSource<'_> {
        ForkSource {
            content_type: &self.content_type,
            expiry: self.expiry(),
        }
    }

    pub(crate) fn info(&self, name: &StreamName) -> StreamInfo {
        StreamInfo {
            name: name.clone(),
            content_type: self.content_type.clone(),
            expiry: self.expiry(),
            next_offset: index_offset::encode(self.next_index),
            closed: self.closed,
        }
    }

    /// Why this stream's configuration differs from `wanted`, if it does.
    pub(crate) fn difference(&self, wanted: &StreamConfig) -> Option<&'static str> {
        let wanted_key = requested_key(wanted);
        let (wanted_expiry, wanted_fork) = wanted_key.split_once('\n').unwrap_or((&wanted_key, ""));
        let (stored_expiry, stored_fork) = self
            .requested
            .split_once('\n')
            .unwrap_or((&self.requested, ""));
        if wanted
            .content_type
            .as_ref()
            .is_some_and(|ct| *ct != self.content_type)
        {
            Some("content type differs")
        } else if wanted_expiry != stored_expiry {
            Some("TTL or expiry differs")
        } else if wanted.closed != self.closed {
            Some("closed flag differs")
        } else if wanted_fork != stored_fork {
            Some("fork origin differs")
        } else {
            None
        }
    }
}

/// What `create` answers when `existing` (the lookup of the stream's row) found one:
/// `None` = no live stream, go on and create it.
pub(crate) fn existing_stream_outcome(
    existing: Result<StreamRow, StorageError>,
    name: &StreamName,
    wanted: &StreamConfig,
) -> Option<Result<CreateOutcome, StorageError>> {
    match existing {
        Ok(row) => Some(match row.difference(wanted) {
            Some(reason) => Err(StorageError::ConfigConflict {
                stream: name.clone(),
                reason: reason.into(),
            }),
            None => Ok(CreateOutcome::AlreadyExists(row.info(name))),
        }),
        Err(StorageError::Gone { .. }) => Some(Err(StorageError::ConfigConflict {
            stream: name.clone(),
            reason: "a deleted stream is kept under this name for its forks".into(),
        })),
        Err(StorageError::NotFound { .. }) => None,
        Err(other) => Some(Err(other)),
    }
}

/// Builds a read batch from the stored payloads at indexes `start..` (bounded by `row`'s
/// tail when the query was made), within `limits`. Payloads already held as [`Bytes`] are kept,
/// not copied.
pub(crate) async fn collect_batch<P: Into<Bytes> + AsRef<[u8]>>(
    row: StreamRow,
    start: u64,
    limits: ReadLimits,
    payloads: impl Stream<Item = Result<P, StorageError>>,
) -> Result<ReadBatch, StorageError> {
    let mut payloads = std::pin::pin!(payloads);
    // Sized up front when the payloads are already in memory: 1000 records grew the vector ten
    // times, copying it each time.
    let mut records = Vec::with_capacity(payloads.size_hint().0.min(limits.max_records));
    let mut bytes = 0usize;
    let mut index = start;
    while records.len() < limits.max_records {
        let Some(data) = payloads.try_next().await? else {
            break;
        };
        let len = data.as_ref().len();
        if !records.is_empty() && bytes + len > limits.max_bytes {
            break;
        }
        bytes += len;
        records.push(Record {
            offset: index_offset::encode(index),
            data: data.into(),
        });
        index += 1;
    }
    let up_to_date = index == row.next_index;
    Ok(ReadBatch {
        records,
        next_offset: index_offset::encode(index),
        up_to_date,
        closed: up_to_date && row.closed,
        content_type: row.content_type,
    })
}

/// The record index `from` names in a stream whose tail is `row.next_index`.
pub(crate) fn start_index(
    name: &StreamName,
    row: &StreamRow,
    from: Option<&Offset>,
) -> Result<u64, StorageError> {
    let Some(offset) = from else { return Ok(0) };
    let index = index_offset::decode(name, offset)?;
    if index > row.next_index {
        return Err(StorageError::UnknownOffset {
            stream: name.clone(),
            offset: offset.clone(),
        });
    }
    Ok(index)
}

/// `wait` for storages whose rows live outside the process: re-reads the row (`read_live`)
/// whenever `wakers` signals the stream, until data lies past `after`, the stream closes or
/// goes away, or `timeout` passes.
pub(crate) async fn wait_on_row<F, Fut>(
    wakers: &Wakers,
    name: &StreamName,
    after: &Offset,
    timeout: Duration,
    mut read_live: F,
) -> Result<WaitOutcome, StorageError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<StreamRow, StorageError>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    // Subscribe before reading, so an append committing in between still wakes us.
    let mut woken = wakers.subscribe(name.as_str());
    loop {
        let row = match read_live().await {
            Err(StorageError::Gone { .. }) => {
                return Err(StorageError::NotFound {
                    stream: name.clone(),
                });
            }
            other => other?,
        };
        let index = start_index(name, &row, Some(after))?;
        if row.next_index > index {
            return Ok(WaitOutcome::Ready);
        }
        if row.closed {
            return Ok(WaitOutcome::Closed);
        }
        match tokio::time::timeout_at(deadline, woken.changed()).await {
            Err(_elapsed) => return Ok(WaitOutcome::TimedOut),
            Ok(_) => woken.mark_unchanged(),
        }
    }
}
