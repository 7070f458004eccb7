//! Channel history in a [`StreamStorage`] stream, and recovery from it (Centrifugo's
//! offset + epoch model).
//!
//! A history channel `c` has a pointer stream `hub/channels/c`, with no records, whose
//! content type `application/json; epoch=E; previous=P` names the current epoch `E` (and the
//! one before), and a stream per epoch, `hub/channels/c/E`, holding the publications. The
//! node that creates the pointer chooses the epoch (creation is idempotent, so every node
//! reads the same one). Each publication is a record `{"ts": ms, "data": any}`. A
//! publication's *offset* is the storage offset just after its record: reading from it
//! returns what came next, so a client that reconnects with the offset of the last
//! publication it received gets exactly what it missed. Offsets are opaque strings that sort
//! bytewise in stream order.
//!
//! Retention: an epoch's stream holds at most about twice what recovery may return. A node
//! checks it every `max_len / 4` of its own appends (and at least every `max_age / 2`); when
//! it holds more than `2 * max_len` publications or its oldest is older than `2 * max_age`,
//! the node starts a new epoch: it makes the new epoch's stream, points the pointer at it,
//! closes the old epoch's stream (appends still meant for it fail and go to the new one) and
//! deletes the one before that. A closed stream stays readable, so nodes deliver the rest of
//! the old epoch before the new one ([`super::order`]); clients recovering from the old
//! epoch answer resync, as recovery past its limits would anyway. On storages with expiry,
//! epoch streams idle for `2 * max_age` expire (nothing in them could be recovered any
//! more); the next publication starts a new epoch.
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
    AppendRequest, Expiry, Offset, ReadBatch, ReadLimits, StorageError, StreamConfig, StreamName,
    StreamStorage,
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
}

/// An epoch's stream: `application/json; after=E` names the epoch it replaced.
const DATA_CONTENT_TYPE: &str = "application/json";
const AFTER: &str = "; after=";
const POINTER_CONTENT_TYPE: &str = "application/json; epoch=";
const PREVIOUS: &str = "; previous=";

/// The content type of a pointer at `epoch`, which replaced `previous`.
fn pointer_content_type(epoch: &str, previous: Option<&str>) -> String {
    match previous {
        Some(previous) => format!("{POINTER_CONTENT_TYPE}{epoch}{PREVIOUS}{previous}"),
        None => format!("{POINTER_CONTENT_TYPE}{epoch}"),
    }
}

/// The (current, previous) epochs a pointer's content type names.
fn pointed(content_type: &str) -> (Arc<str>, Option<String>) {
    let rest = content_type
        .strip_prefix(POINTER_CONTENT_TYPE)
        .unwrap_or(content_type);
    match rest.split_once(PREVIOUS) {
        Some((epoch, previous)) => (epoch.into(), Some(previous.to_owned())),
        None => (rest.into(), None),
    }
}

/// What this node knows of one channel's history.
struct Known {
    epoch: Arc<str>,
    /// This node's appends since it last checked the epoch's size, and when that was (ms).
    appended: usize,
    checked_ms: i64,
}

/// The history streams of this node's channels.
pub(crate) struct History {
    storage: Arc<dyn StreamStorage>,
    known: Mutex<HashMap<String, Known>>,
}

fn pointer_of(channel: &str) -> Result<StreamName, HubError> {
    Ok(StreamName::new(&format!("hub/channels/{channel}"))?)
}

fn stream_of(channel: &str, epoch: &str) -> Result<StreamName, HubError> {
    Ok(StreamName::new(&format!("hub/channels/{channel}/{epoch}"))?)
}

fn storage_error(e: StorageError) -> HubError {
    HubError::Storage(e)
}

/// The stream is not there (deleted, or expired).
fn absent(e: &StorageError) -> bool {
    matches!(e, StorageError::NotFound { .. } | StorageError::Gone { .. })
}

/// Where each record of `batch` ends (the offset a client holding it reports).
fn ends(batch: &ReadBatch) -> impl Iterator<Item = String> + '_ {
    batch
        .records
        .iter()
        .skip(1)
        .map(|r| r.offset.as_str().to_owned())
        .chain(std::iter::once(batch.next_offset.as_str().to_owned()))
}

/// What `read_after` found.
pub(crate) struct Read {
    /// Each record: where it lies, and its publication (`None`: not one, step over it).
    pub(crate) records: Vec<(Placed, Option<Value>)>,
    /// Nothing more will be added to the epoch (its stream is closed and read to its end,
    /// or gone).
    pub(crate) finished: bool,
}

impl History {
    pub(crate) fn new(storage: Arc<dyn StreamStorage>) -> History {
        History {
            storage,
            known: Mutex::new(HashMap::new()),
        }
    }

    fn remember(&self, channel: &str, epoch: &Arc<str>) {
        let mut known = lock(&self.known);
        if known.get(channel).is_some_and(|k| k.epoch == *epoch) {
            return;
        }
        let fresh = Known {
            epoch: epoch.clone(),
            appended: 0,
            checked_ms: now_ms(),
        };
        known.insert(channel.to_owned(), fresh);
    }

    fn forget(&self, channel: &str) {
        lock(&self.known).remove(channel);
    }

    fn config(&self, content_type: String, limits: HistoryLimits) -> StreamConfig {
        let mut config = StreamConfig::with_content_type(content_type);
        if self.storage.capabilities().ttl {
            config.expiry = Expiry::Ttl(limits.max_age.saturating_mul(2));
        }
        config
    }

    /// The channel's current epoch and the one before, as its pointer says.
    pub(crate) async fn current(
        &self,
        channel: &str,
    ) -> Result<Option<(Arc<str>, Option<String>)>, HubError> {
        match self.storage.head(&pointer_of(channel)?).await {
            Ok(info) => Ok(Some(pointed(&info.content_type))),
            Err(e) if absent(&e) => Ok(None),
            Err(e) => Err(storage_error(e)),
        }
    }

    /// The epochs that followed `since` up to `current`, oldest first (ending with
    /// `current`), as far as their streams tell (at most `max`).
    pub(crate) async fn epochs_after(
        &self,
        channel: &str,
        since: &str,
        current: &Arc<str>,
        max: usize,
    ) -> Vec<Arc<str>> {
        let mut chain = vec![current.clone()];
        while chain.len() < max {
            let Some(last) = chain.last() else { break };
            let Ok(stream) = stream_of(channel, last) else {
                break;
            };
            let Ok(info) = self.storage.head(&stream).await else {
                break;
            };
            let Some((_, before)) = info.content_type.split_once(AFTER) else {
                break;
            };
            if before == since {
                break;
            }
            chain.push(before.into());
        }
        chain.reverse();
        chain
    }

    /// The channel's epoch; without one yet, a new epoch (its stream first, then the pointer;
    /// another node's pointer, made first, wins).
    async fn epoch(&self, channel: &str, limits: HistoryLimits) -> Result<Arc<str>, HubError> {
        if let Some(known) = lock(&self.known).get(channel) {
            return Ok(known.epoch.clone());
        }
        let epoch = match self.current(channel).await? {
            Some((epoch, _)) => epoch,
            None => self.start_epoch(channel, limits, None).await?,
        };
        self.remember(channel, &epoch);
        Ok(epoch)
    }

    /// Makes a new epoch after `replaced` (its pointer is deleted first, if given); the
    /// epoch the channel has then.
    async fn start_epoch(
        &self,
        channel: &str,
        limits: HistoryLimits,
        replaced: Option<(&str, Option<&str>)>,
    ) -> Result<Arc<str>, HubError> {
        let mine = format!("{:016x}", rand::random::<u64>());
        let content_type = match replaced {
            Some((old, _)) => format!("{DATA_CONTENT_TYPE}{AFTER}{old}"),
            None => DATA_CONTENT_TYPE.to_owned(),
        };
        self.storage
            .create(
                &stream_of(channel, &mine)?,
                self.config(content_type, limits),
                Vec::new(),
            )
            .await
            .map_err(storage_error)?;
        let pointer = pointer_of(channel)?;
        if replaced.is_some() {
            match self.storage.delete(&pointer).await {
                Ok(()) => {}
                Err(e) if absent(&e) => {}
                Err(e) => return Err(storage_error(e)),
            }
        }
        let content_type = pointer_content_type(&mine, replaced.map(|(old, _)| old));
        // No expiry: nothing reads or appends to it to keep it alive (it holds no records).
        let config = StreamConfig::with_content_type(content_type);
        let epoch = match self.storage.create(&pointer, config, Vec::new()).await {
            Ok(outcome) => pointed(&outcome.info().content_type).0,
            Err(StorageError::ConfigConflict { .. }) => {
                let info = self.storage.head(&pointer).await.map_err(storage_error)?;
                pointed(&info.content_type).0
            }
            Err(e) => return Err(storage_error(e)),
        };
        if *epoch != *mine {
            // Another node's epoch won: ours was never used.
            let _ = self.storage.delete(&stream_of(channel, &mine)?).await;
            return Ok(epoch);
        }
        if let Some((old, before)) = replaced {
            // Appends still meant for the old epoch fail from now on; the one before goes.
            let close = AppendRequest {
                close: true,
                ..AppendRequest::default()
            };
            match self.storage.append(&stream_of(channel, old)?, close).await {
                Ok(_) => {}
                Err(e) if absent(&e) => {}
                Err(e) => return Err(storage_error(e)),
            }
            if let Some(before) = before {
                match self.storage.delete(&stream_of(channel, before)?).await {
                    Ok(()) => {}
                    Err(e) if absent(&e) => {}
                    Err(e) => return Err(storage_error(e)),
                }
            }
        }
        Ok(epoch)
    }

    /// Appends a publication; where it landed in the channel's history.
    pub(crate) async fn append(
        &self,
        channel: &str,
        limits: HistoryLimits,
        data: &Value,
    ) -> Result<Placed, HubError> {
        let record = Bytes::from(json!({ "ts": now_ms(), "data": data }).to_string());
        let mut failed: Option<Arc<str>> = None;
        let (done, epoch) = loop {
            let mut epoch = self.epoch(channel, limits).await?;
            if failed.as_ref() == Some(&epoch) {
                // The pointer still names the epoch whose stream is gone (it expired).
                epoch = self.replace_missing(channel, limits, &epoch).await?;
            }
            let stream = stream_of(channel, &epoch)?;
            match self
                .storage
                .append(&stream, AppendRequest::record(record.clone()))
                .await
            {
                Ok(done) => break (done, epoch),
                // A new epoch started since this node learnt it: learn it again, once.
                Err(e)
                    if failed.is_none()
                        && (absent(&e) || matches!(e, StorageError::Closed { .. })) =>
                {
                    self.forget(channel);
                    failed = Some(epoch);
                }
                Err(e) => return Err(storage_error(e)),
            }
        };
        // A plain one-record append always reports where its record starts.
        let prev = done.first_offset.ok_or_else(|| {
            HubError::InvalidInput(courier_traits::InvalidInput::new(
                "history stream",
                channel,
                "the storage did not report where the appended record starts",
            ))
        })?;
        if self.check_due(channel, limits)
            && let Err(e) = self.keep_bounded(channel, limits, &epoch).await
        {
            tracing::warn!(channel, error = %e, "keeping the history within its limits failed");
        }
        Ok(Placed {
            prev: prev.as_str().to_owned(),
            offset: done.next_offset.as_str().to_owned(),
            epoch,
        })
    }

    /// Starts a new epoch in place of `epoch`, whose stream is gone, if the pointer still
    /// names it; the channel's epoch then.
    async fn replace_missing(
        &self,
        channel: &str,
        limits: HistoryLimits,
        epoch: &Arc<str>,
    ) -> Result<Arc<str>, HubError> {
        self.forget(channel);
        let epoch = match self.current(channel).await? {
            Some((current, previous)) if current == *epoch => {
                self.start_epoch(channel, limits, Some((epoch, previous.as_deref())))
                    .await?
            }
            Some((current, _)) => current,
            None => self.start_epoch(channel, limits, None).await?,
        };
        self.remember(channel, &epoch);
        Ok(epoch)
    }

    /// Counts an append; whether the epoch's size is due to be checked.
    fn check_due(&self, channel: &str, limits: HistoryLimits) -> bool {
        let mut known = lock(&self.known);
        let Some(k) = known.get_mut(channel) else {
            return false;
        };
        k.appended += 1;
        let now = now_ms();
        let due = k.appended >= (limits.max_len / 4).max(1)
            || now - k.checked_ms >= (limits.max_age.as_millis() / 2) as i64;
        if due {
            k.appended = 0;
            k.checked_ms = now;
        }
        due
    }

    /// Starts a new epoch when `epoch` holds more than `2 * max_len` publications or one
    /// older than `2 * max_age`.
    async fn keep_bounded(
        &self,
        channel: &str,
        limits: HistoryLimits,
        epoch: &str,
    ) -> Result<(), HubError> {
        let stream = stream_of(channel, epoch)?;
        let most = limits.max_len.saturating_mul(2);
        let oldest_kept = now_ms().saturating_sub(limits.max_age.as_millis() as i64 * 2);
        let mut from = None;
        let mut seen = 0usize;
        let over = loop {
            let wanted = ReadLimits {
                max_records: most + 1 - seen,
                ..ReadLimits::default()
            };
            let batch = match self.storage.read(&stream, from.clone(), wanted).await {
                Ok(batch) => batch,
                Err(e) if absent(&e) => return Ok(()),
                Err(e) => return Err(storage_error(e)),
            };
            if batch.closed {
                return Ok(()); // another node started a new epoch already
            }
            if seen == 0
                && let Some(first) = batch.records.first()
                && serde_json::from_slice::<StoredRecord>(&first.data)
                    .ok()
                    .and_then(|r| r.ts)
                    .is_some_and(|ts| ts < oldest_kept)
            {
                break true;
            }
            seen += batch.records.len();
            if seen > most {
                break true;
            }
            if batch.up_to_date || batch.records.is_empty() {
                break false;
            }
            from = Some(batch.next_offset);
        };
        if !over {
            return Ok(());
        }
        let Some((current, previous)) = self.current(channel).await? else {
            return Ok(());
        };
        if *current != *epoch {
            return Ok(()); // another node started a new epoch already
        }
        tracing::debug!(channel, "history over its limits: a new epoch starts");
        self.forget(channel);
        let epoch = self
            .start_epoch(channel, limits, Some((epoch, previous.as_deref())))
            .await?;
        self.remember(channel, &epoch);
        Ok(())
    }

    /// Up to `max_records` records of `epoch` after `from`, in order.
    pub(crate) async fn read_after(
        &self,
        channel: &str,
        epoch: &Arc<str>,
        from: &str,
        max_records: usize,
    ) -> Result<Read, HubError> {
        let stream = stream_of(channel, epoch)?;
        let from = Offset::parse(from)?;
        let limits = ReadLimits {
            max_records,
            ..ReadLimits::default()
        };
        let batch = match self.storage.read(&stream, Some(from), limits).await {
            Ok(batch) => batch,
            Err(e) if absent(&e) => {
                return Ok(Read {
                    records: Vec::new(),
                    finished: true,
                });
            }
            Err(e) => return Err(storage_error(e)),
        };
        let records = batch
            .records
            .iter()
            .zip(ends(&batch))
            .map(|(record, offset)| {
                let data = serde_json::from_slice::<StoredRecord>(&record.data)
                    .ok()
                    .filter(|stored| stored.ts.is_some())
                    .map(|stored| stored.data);
                let placed = Placed {
                    prev: record.offset.as_str().to_owned(),
                    offset,
                    epoch: epoch.clone(),
                };
                (placed, data)
            })
            .collect();
        Ok(Read {
            records,
            finished: batch.closed && batch.up_to_date,
        })
    }

    /// The offset `epoch`'s stream starts at (`None` when it is gone).
    pub(crate) async fn start(
        &self,
        channel: &str,
        epoch: &str,
    ) -> Result<Option<String>, HubError> {
        let first = ReadLimits {
            max_records: 1,
            ..ReadLimits::default()
        };
        match self
            .storage
            .read(&stream_of(channel, epoch)?, None, first)
            .await
        {
            Ok(batch) => Ok(Some(match batch.records.first() {
                Some(record) => record.offset.as_str().to_owned(),
                None => batch.next_offset.as_str().to_owned(),
            })),
            Err(e) if absent(&e) => Ok(None),
            Err(e) => Err(storage_error(e)),
        }
    }

    /// The channel's epoch and tail now (its history is made when there is none).
    pub(crate) async fn position(
        &self,
        channel: &str,
        limits: HistoryLimits,
    ) -> Result<Position, HubError> {
        self.forget(channel); // read the pointer: a subscription must start at the current epoch
        let mut epoch = self.epoch(channel, limits).await?;
        let info = match self.storage.head(&stream_of(channel, &epoch)?).await {
            Ok(info) => info,
            Err(e) if absent(&e) => {
                epoch = self.replace_missing(channel, limits, &epoch).await?;
                let stream = stream_of(channel, &epoch)?;
                self.storage.head(&stream).await.map_err(storage_error)?
            }
            Err(e) => return Err(storage_error(e)),
        };
        Ok(Position {
            epoch,
            tail: info.next_offset.as_str().to_owned(),
        })
    }

    /// What a client that last saw `since` in `epoch` missed, within `limits`; `current` is
    /// the channel's epoch.
    pub(crate) async fn recover(
        &self,
        channel: &str,
        limits: HistoryLimits,
        current: &str,
        epoch: &str,
        since: &str,
    ) -> Result<Recovery, HubError> {
        if current != epoch {
            return Ok(Recovery::Resync(format!(
                "epoch {epoch:?} is not the channel's ({current:?}): its history was reset"
            )));
        }
        let stream = stream_of(channel, epoch)?;
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
                Err(e) if absent(&e) => {
                    return Ok(Recovery::Resync("the channel's history was reset".into()));
                }
                Err(e) => return Err(storage_error(e)),
            };
            let after: Vec<String> = ends(&batch).collect();
            for (record, offset) in batch.records.iter().zip(after) {
                let Ok(stored) = serde_json::from_slice::<StoredRecord>(&record.data) else {
                    continue;
                };
                let Some(ts) = stored.ts else {
                    continue; // not a publication
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
