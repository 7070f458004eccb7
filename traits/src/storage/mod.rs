//! [`StreamStorage`]: named append-only byte streams with opaque, bytewise-ordered offsets.
//!
//! Protocol-neutral, but rich enough for the Durable Streams protocol: content type, TTL or
//! absolute expiry, a durable closed flag, idempotent producers, a writer sequence, forks and
//! delete.
//!
//! # Semantics
//!
//! * **Create** is idempotent: [`CreateOutcome::Created`], or
//!   [`CreateOutcome::AlreadyExists`] when the configuration matches, else
//!   [`StorageError::ConfigConflict`].
//! * **Append** is atomic: the records, the producer state and the close flag commit together
//!   or not at all. Checks run in this order: closed (a producer's retry of the closing append
//!   is a duplicate, not an error, and an unstamped close-only append on a closed stream
//!   succeeds again: closing is idempotent), content type (not checked on close-only
//!   appends), producer, writer sequence.
//! * **Producers** (id, epoch, seq) are deduplicated by the storage itself, so the rules hold
//!   across server nodes: for an unknown producer seq must be 0; an older epoch is
//!   [`StorageError::StaleProducerEpoch`]; a newer epoch must start at seq 0; within an epoch
//!   `seq <= last` is a duplicate (nothing written, [`AppendOutcome::duplicate`]), `last + 1` is
//!   accepted, anything higher is [`StorageError::ProducerSeqGap`].
//! * **Offsets** are opaque, unique, strictly increasing and sort bytewise in stream order.
//!   Reading from an offset returns the records after it; chaining reads by
//!   [`ReadBatch::next_offset`] reproduces the stream exactly.
//! * **Wait** returns [`WaitOutcome::Ready`] as soon as data lies past the offset,
//!   [`WaitOutcome::Closed`] when the stream is closed at that offset, an error when the stream
//!   is deleted, or [`WaitOutcome::TimedOut`]. Shared backends are woken by appends made
//!   through other nodes.
//! * **Expiry**: a TTL is an idle window reset by reads and appends (not by `head`); an
//!   absolute expiry never moves. An expired stream behaves as absent.
//! * **Keyed appends** ([`StreamStorage::append_keyed`], capability
//!   [`StorageCapabilities::keyed_append`]) deduplicate by a key stored with the records: a
//!   record whose key was committed to the stream within the call's window (on the storage's
//!   [`Clock`](crate::clock::Clock)) is not written and answers [`KeyedOutcome::Duplicate`] with
//!   the tag of the record that committed it; a key repeated inside one call is a duplicate of
//!   its first occurrence. The other records and their keys commit together or not at all.
//!   Keys belong to the stream: deleting it forgets them, and a fork starts without any. A
//!   call may forget keys older than its own window, so use one window per stream.
//! * **Delete** removes the stream; if forks of it are alive it is kept for them but answers
//!   [`StorageError::Gone`] until the last fork goes.
//!
//! # Cancellation
//!
//! Every method is cancel-safe in the sense that dropping its future never leaves a partial
//! append: either the whole append committed or none of it did (use a producer stamp to retry
//! safely). Dropping a `wait` only stops waiting.

mod error;
mod forwarding;
mod keyed;
mod names;
mod types;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use error::StorageError;
pub use forwarding::ForwardingStorage;
pub use keyed::{KeyedOutcome, KeyedRecord, MAX_DEDUP_KEY_LEN};
pub use names::{MAX_OFFSET_LEN, MAX_STREAM_NAME_LEN, Offset, StreamName};
pub use types::{
    AppendOutcome, AppendRequest, CreateOutcome, DEFAULT_CONTENT_TYPE, Expiry, ForkFrom,
    MAX_PRODUCER_NUMBER, ProducerAck, ProducerStamp, ReadBatch, ReadLimits, Record,
    StorageCapabilities, StreamConfig, StreamInfo, SubOffset, WaitOutcome,
};

/// Named append-only streams. See the [module docs](self) for the guarantees.
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
    fn capabilities(&self) -> StorageCapabilities {
        (**self).capabilities()
    }
}
