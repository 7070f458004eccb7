//! Channel history in a [`StreamStorage`] stream, and recovery from it (Centrifugo's
//! offset + epoch model).
//!
//! A history channel `c` is the stream `hub/channels/c`. Its first record is
//! `{"epoch": "<random>"}`, written when the stream is created (creation is idempotent, so
//! every node reads the same epoch); each publication is a record `{"ts": ms, "data": any}`.
//! A publication's *offset* is the storage offset just after its record: reading from it
//! returns what came next, so a client that reconnects with the offset of the last
//! publication it received gets exactly what it missed. Offsets are opaque strings that sort
//! bytewise in stream order.
//!
//! The history is bounded by [`HistoryLimits`]: a client that missed more than `max_len`
//! publications, or whose first missed publication is older than `max_age`, or whose epoch
//! is not the stream's (the stream was deleted and made again), or whose offset the stream
//! does not know, is told to resync instead of receiving a partial history. So is one whose
//! missed publications add up to more than [`MAX_RECOVERY_BYTES`]: the recovery travels as
//! one `subscribed` message, and one the SDK cannot take (its frame and inflate limit is
//! [`MAX_INFLATED`]) would make it reconnect and ask for the same recovery forever.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use courier_traits::storage::{
    AppendRequest, Offset, ReadLimits, StorageError, StreamConfig, StreamName, StreamStorage,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::HubError;
use crate::compression::MAX_INFLATED;
use crate::locks::lock;
use crate::message::now_ms;

/// Most bytes of stored publications one recovery answers with: the SDK's message limit,
/// less room for the reply's envelope (the stored records are a little larger than the
/// `{"offset", "data"}` entries sent, so their sum bounds the reply).
pub(crate) const MAX_RECOVERY_BYTES: usize = MAX_INFLATED as usize - (1 << 20);

/// How far back a channel's history reaches for recovery.
///
/// ```
/// use std::time::Duration;
/// use courier_hub::HistoryLimits;
/// let limits = HistoryLimits::new(100, Duration::from_secs(300));
/// assert_eq!(limits.max_len, 100);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryLimits {
    /// Most publications a reconnecting client may have missed and still recover.
    pub max_len: usize,
    /// Oldest publication a reconnecting client may recover.
    pub max_age: Duration,
}

impl HistoryLimits {
    /// Limits of `max_len` publications and `max_age`.
    pub fn new(max_len: usize, max_age: Duration) -> HistoryLimits {
        HistoryLimits { max_len, max_age }
    }
}

/// A publication read back from history.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Stored {
    /// The offset just after it (what a client reports to recover after it).
    pub(crate) offset: String,
    pub(crate) data: Value,
}

/// Where a publication lies in its channel's stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Placed {
    /// The offset just before it (the one after the publication it follows).
    pub(crate) prev: String,
    /// The offset just after it.
    pub(crate) offset: String,
    pub(crate) epoch: Arc<str>,
}

/// What a recovery found.
#[derive(Debug)]
pub(crate) enum Recovery {
    /// Everything after the client's offset, in order.
    Recovered(Vec<Stored>),
    /// History does not reach back that far (or the epoch changed): the client must resync.
    Resync(String),
}

/// Where a history channel stands.
#[derive(Debug)]
pub(crate) struct Position {
    pub(crate) epoch: Arc<str>,
    /// The offset after the last publication.
    pub(crate) tail: String,
}

#[derive(Deserialize)]
struct StoredRecord {
    ts: Option<i64>,
    #[serde(default)]
    data: Value,
    epoch: Option<String>,
}

/// The history streams of this node's channels.
pub(crate) struct History {
    storage: Arc<dyn StreamStorage>,
    /// Epochs already read, by channel (a stream's epoch never changes while it exists).
    epochs: Mutex<HashMap<String, Arc<str>>>,
}

fn stream_of(channel: &str) -> Result<StreamName, HubError> {
    Ok(StreamName::new(&format!("hub/channels/{channel}"))?)
}

fn storage_error(e: StorageError) -> HubError {
    HubError::Storage(e)
}

impl History {
    pub(crate) fn new(storage: Arc<dyn StreamStorage>) -> History {
        History {
            storage,
            epochs: Mutex::new(HashMap::new()),
        }
    }

    /// The channel's epoch, creating its stream when there is none yet.
    async fn epoch(&self, channel: &str, stream: &StreamName) -> Result<Arc<str>, HubError> {
        if let Some(epoch) = lock(&self.epochs).get(channel) {
            return Ok(epoch.clone());
        }
        let mine = format!("{:016x}", rand::random::<u64>());
        let first = Bytes::from(json!({ "epoch": mine }).to_string());
        self.storage
            .create(
                stream,
                StreamConfig::with_content_type("application/json"),
                vec![first],
            )
            .await
            .map_err(storage_error)?;
        // Another node may have created it first with its own epoch: the stored one counts.
        let batch = self
            .storage
            .read(
                stream,
                None,
                ReadLimits {
                    max_records: 1,
                    ..ReadLimits::default()
                },
            )
            .await
            .map_err(storage_error)?;
        let epoch: Arc<str> = batch
            .records
            .first()
            .and_then(|r| serde_json::from_slice::<StoredRecord>(&r.data).ok())
            .and_then(|r| r.epoch)
            .ok_or_else(|| {
                HubError::InvalidInput(courier_traits::InvalidInput::new(
                    "history stream",
                    stream.as_str(),
                    "its first record is not an epoch record",
                ))
            })?
            .into();
        lock(&self.epochs).insert(channel.to_owned(), epoch.clone());
        Ok(epoch)
    }

    /// Appends a publication; where it landed in the channel's stream.
    pub(crate) async fn append(&self, channel: &str, data: &Value) -> Result<Placed, HubError> {
        let stream = stream_of(channel)?;
        let epoch = self.epoch(channel, &stream).await?;
        let record = json!({ "ts": now_ms(), "data": data }).to_string();
        let done = self
            .storage
            .append(&stream, AppendRequest::record(record))
            .await
            .map_err(storage_error)?;
        // A plain one-record append always reports where its record starts.
        let prev = done.first_offset.ok_or_else(|| {
            HubError::InvalidInput(courier_traits::InvalidInput::new(
                "history stream",
                stream.as_str(),
                "the storage did not report where the appended record starts",
            ))
        })?;
        Ok(Placed {
            prev: prev.as_str().to_owned(),
            offset: done.next_offset.as_str().to_owned(),
            epoch,
        })
    }

    /// Up to `max_records` publications stored after `from` in `epoch`, in order, and the
    /// records without a publication (the epoch record) as `None` data, so the caller can
    /// step over them. An epoch that is no longer the channel's reads nothing.
    pub(crate) async fn read_after(
        &self,
        channel: &str,
        epoch: &str,
        from: &str,
        max_records: usize,
    ) -> Result<Vec<(Placed, Option<Value>)>, HubError> {
        let stream = stream_of(channel)?;
        let current = self.epoch(channel, &stream).await?;
        if *current != *epoch {
            return Ok(Vec::new());
        }
        let from = Offset::parse(from)?;
        let batch = self
            .storage
            .read(
                &stream,
                Some(from),
                ReadLimits {
                    max_records,
                    ..ReadLimits::default()
                },
            )
            .await
            .map_err(storage_error)?;
        let ends = batch
            .records
            .iter()
            .skip(1)
            .map(|r| r.offset.as_str().to_owned())
            .chain(std::iter::once(batch.next_offset.as_str().to_owned()));
        Ok(batch
            .records
            .iter()
            .zip(ends)
            .map(|(record, offset)| {
                let data = serde_json::from_slice::<StoredRecord>(&record.data)
                    .ok()
                    .filter(|stored| stored.ts.is_some())
                    .map(|stored| stored.data);
                let placed = Placed {
                    prev: record.offset.as_str().to_owned(),
                    offset,
                    epoch: current.clone(),
                };
                (placed, data)
            })
            .collect())
    }

    /// The channel's epoch and tail now.
    pub(crate) async fn position(&self, channel: &str) -> Result<Position, HubError> {
        let stream = stream_of(channel)?;
        let epoch = self.epoch(channel, &stream).await?;
        let info = self.storage.head(&stream).await.map_err(storage_error)?;
        Ok(Position {
            epoch,
            tail: info.next_offset.as_str().to_owned(),
        })
    }

    /// What a client that last saw `since` in `epoch` missed, within `limits`.
    pub(crate) async fn recover(
        &self,
        channel: &str,
        limits: HistoryLimits,
        epoch: &str,
        since: &str,
    ) -> Result<Recovery, HubError> {
        let stream = stream_of(channel)?;
        let current = self.epoch(channel, &stream).await?;
        if *current != *epoch {
            return Ok(Recovery::Resync(format!(
                "epoch {epoch:?} is not the channel's ({current:?}): its history was reset"
            )));
        }
        let Ok(mut from) = Offset::parse(since) else {
            return Ok(Recovery::Resync(format!("{since:?} is not an offset")));
        };
        let mut missed = Vec::new();
        let mut missed_bytes = 0usize;
        let oldest_allowed = now_ms().saturating_sub(limits.max_age.as_millis() as i64);
        loop {
            let wanted = limits.max_len + 1 - missed.len();
            let batch = match self
                .storage
                .read(
                    &stream,
                    Some(from.clone()),
                    ReadLimits {
                        max_records: wanted,
                        ..ReadLimits::default()
                    },
                )
                .await
            {
                Ok(batch) => batch,
                Err(StorageError::UnknownOffset { .. }) => {
                    return Ok(Recovery::Resync(format!(
                        "offset {since:?} is not in the channel's history"
                    )));
                }
                Err(e) => return Err(storage_error(e)),
            };
            let after: Vec<String> = batch
                .records
                .iter()
                .skip(1)
                .map(|r| r.offset.as_str().to_owned())
                .chain(std::iter::once(batch.next_offset.as_str().to_owned()))
                .collect();
            for (record, offset) in batch.records.iter().zip(after) {
                let Ok(stored) = serde_json::from_slice::<StoredRecord>(&record.data) else {
                    continue;
                };
                let Some(ts) = stored.ts else {
                    continue; // the epoch record
                };
                if missed.is_empty() && ts < oldest_allowed {
                    return Ok(Recovery::Resync(format!(
                        "the first missed publication is older than {:?}",
                        limits.max_age
                    )));
                }
                // The offset is sent too; the record's own `ts` wrapping covers the keys.
                missed_bytes += record.data.len() + offset.len();
                if missed_bytes > MAX_RECOVERY_BYTES {
                    return Ok(Recovery::Resync(format!(
                        "the missed publications exceed {MAX_RECOVERY_BYTES} bytes"
                    )));
                }
                missed.push(Stored {
                    offset,
                    data: stored.data,
                });
            }
            if missed.len() > limits.max_len {
                return Ok(Recovery::Resync(format!(
                    "more than {} publications were missed",
                    limits.max_len
                )));
            }
            if batch.up_to_date || batch.records.is_empty() {
                return Ok(Recovery::Recovered(missed));
            }
            from = batch.next_offset;
        }
    }
}
