//! [`StreamStorage`], the trait (the guarantees are in the [module docs](crate::storage)), and
//! its implementation for shared handles.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::error::StorageError;
use super::joined::{JoinedBatch, JoiningFor, ReadFrom};
use super::keyed::{KeyedOutcome, KeyedRecord};
use super::names::{Offset, StreamName};
use super::types::{
    AppendOutcome, AppendRequest, CreateOutcome, ReadBatch, ReadLimits, StorageCapabilities,
    StreamConfig, StreamInfo, WaitOutcome,
};

/// Named append-only streams. See the [module docs](crate::storage) for the guarantees.
///
/// # Example
///
/// ```
/// use courier_traits::storage::*;
///
/// async fn log_line(store: &dyn StreamStorage, line: &str) -> Result<Offset, StorageError> {
///     let name = StreamName::new("app-log")?;
///     store.create(&name, StreamConfig::with_content_type("text/plain"), vec![]).await?;
///     let done = store.append(&name, AppendRequest::record(line.to_owned())).await?;
///     Ok(done.next_offset)
/// }
/// ```
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait StreamStorage: Send + Sync {
    /// Creates `name` with `config` and `initial` records (idempotent; see the module docs).
    ///
    /// Errors: `ConfigConflict`; `Gone` if a deleted stream is kept for forks under that name;
    /// `ForkSourceNotFound` / `ForkSourceGone` / `UnknownOffset` / `InvalidInput` for bad forks.
    async fn create(
        &self,
        name: &StreamName,
        config: StreamConfig,
        initial: Vec<Bytes>,
    ) -> Result<CreateOutcome, StorageError>;

    /// Appends atomically (see the module docs for the order of checks).
    async fn append(
        &self,
        name: &StreamName,
        request: AppendRequest,
    ) -> Result<AppendOutcome, StorageError>;

    /// Reads records after `from` (`None` = from the start), within `limits`. Resets a TTL.
    ///
    /// Errors: `NotFound`, `Gone`, `UnknownOffset`.
    async fn read(
        &self,
        name: &StreamName,
        from: Option<Offset>,
        limits: ReadLimits,
    ) -> Result<ReadBatch, StorageError>;

    /// Waits until data lies after `after`, the stream is closed there, or `timeout` passes.
    ///
    /// Errors: `NotFound` (also when the stream is deleted or expires while waiting), `Gone`.
    async fn wait(
        &self,
        name: &StreamName,
        after: &Offset,
        timeout: Duration,
    ) -> Result<WaitOutcome, StorageError>;

    /// The stream's metadata and tail, without resetting its TTL.
    async fn head(&self, name: &StreamName) -> Result<StreamInfo, StorageError>;

    /// Deletes the stream (see the module docs for streams with live forks).
    async fn delete(&self, name: &StreamName) -> Result<(), StorageError>;

    /// Appends the records whose keys were not committed to `stream` within `window`, with
    /// their keys, atomically; answers one outcome per input record, in order (see the module
    /// docs). The stream must exist: the caller creates it beforehand.
    ///
    /// Errors: `NotFound` (no such stream, or it expired), `Gone`, `Closed`, `TooLarge`,
    /// `InvalidInput` (an empty or over-long key or tag); on any error nothing is written and no
    /// key is committed. The default answers [`StorageError::Unsupported`]: storages that offer
    /// it say so with [`StorageCapabilities::keyed_append`].
    async fn append_keyed(
        &self,
        stream: &StreamName,
        records: Vec<KeyedRecord>,
        window: Duration,
    ) -> Result<Vec<KeyedOutcome>, StorageError> {
        let _ = (stream, records, window);
        Err(StorageError::Unsupported("keyed appends"))
    }

    /// Reads like [`read`](Self::read) (and resets a TTL as it does), answering the records
    /// joined into one body, as `join` says for the stream's content type, instead of a
    /// [`Record`](super::Record) with its offset each: what a server sending a read as one
    /// response needs. [`ReadFrom::Tail`] reads from the tail in the same call.
    ///
    /// The default calls [`read`](Self::read) (after [`head`](Self::head) for the tail) and
    /// joins its records; a storage overrides it to skip the records and the second call.
    ///
    /// Errors: as [`read`](Self::read).
    async fn read_joined(
        &self,
        name: &StreamName,
        from: ReadFrom,
        limits: ReadLimits,
        join: JoiningFor,
    ) -> Result<JoinedBatch, StorageError> {
        let from = match from {
            ReadFrom::Start => None,
            ReadFrom::After(offset) => Some(offset),
            ReadFrom::Tail => {
                let head = self.head(name).await?;
                // Still a read (it resets an idle TTL), but its records are not returned: one
                // appended between `head` and this read would be answered past the tail the
                // caller asked for. The tail is `head`'s, empty and up to date.
                self.read(name, Some(head.next_offset.clone()), limits)
                    .await?;
                return Ok(JoinedBatch::empty_at_tail(head, join));
            }
        };
        let batch = self.read(name, from, limits).await?;
        Ok(JoinedBatch::from_batch(batch, join))
    }

    /// What this storage promises.
    fn capabilities(&self) -> StorageCapabilities;
}

/// A shared storage is a storage: `Arc<dyn StreamStorage>` and `Arc<S>` work wherever one is expected.
#[async_trait]
impl<S: StreamStorage + ?Sized> StreamStorage for std::sync::Arc<S> {
    async fn create(
        &self,
        name: &StreamName,
        config: StreamConfig,
        initial: Vec<Bytes>,
    ) -> Result<CreateOutcome, StorageError> {
        (**self).create(name, config, initial).await
    }
    async fn append(
        &self,
        name: &StreamName,
        request: AppendRequest,
    ) -> Result<AppendOutcome, StorageError> {
        (**self).append(name, request).await
    }
    async fn read(
        &self,
        name: &StreamName,
        from: Option<Offset>,
        limits: ReadLimits,
    ) -> Result<ReadBatch, StorageError> {
        (**self).read(name, from, limits).await
    }
    async fn wait(
        &self,
        name: &StreamName,
        after: &Offset,
        timeout: Duration,
    ) -> Result<WaitOutcome, StorageError> {
        (**self).wait(name, after, timeout).await
    }
    async fn head(&self, name: &StreamName) -> Result<StreamInfo, StorageError> {
        (**self).head(name).await
    }
    async fn delete(&self, name: &StreamName) -> Result<(), StorageError> {
        (**self).delete(name).await
    }
    async fn append_keyed(
        &self,
        stream: &StreamName,
        records: Vec<KeyedRecord>,
        window: Duration,
    ) -> Result<Vec<KeyedOutcome>, StorageError> {
        (**self).append_keyed(stream, records, window).await
    }
    async fn read_joined(
        &self,
        name: &StreamName,
        from: ReadFrom,
        limits: ReadLimits,
        join: JoiningFor,
    ) -> Result<JoinedBatch, StorageError> {
        (**self).read_joined(name, from, limits, join).await
    }
    fn capabilities(&self) -> StorageCapabilities {
        (**self).capabilities()
    }
}
