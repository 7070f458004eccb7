//! [`ForwardingStorage`]: a storage that passes every call to another one except those it
//! overrides, so a wrapper that changes one method (counts calls, delays an answer, acts
//! right after a commit) writes only that method. Methods added to [`StreamStorage`] later
//! forward too, instead of silently answering a default in every hand-written wrapper.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::error::StorageError;
use super::joined::{JoinedBatch, JoiningFor, ReadFrom};
use super::keyed::{KeyedOutcome, KeyedRecord};
use super::names::{Offset, StreamName};
use super::stream_storage::StreamStorage;
use super::types::{
    AppendOutcome, AppendRequest, CreateOutcome, ReadBatch, ReadLimits, StorageCapabilities,
    StreamConfig, StreamInfo, WaitOutcome,
};

/// A [`StreamStorage`] made of another one: every method forwards to [`inner`](Self::inner)
/// unless the implementation overrides it. Each implementation is a `StreamStorage`.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// use courier_traits::storage::*;
///
/// /// Counts reads; everything else goes straight to the wrapped storage.
/// struct ReadCounting {
///     inner: Arc<dyn StreamStorage>,
///     reads: AtomicUsize,
/// }
///
/// #[async_trait::async_trait]
/// impl ForwardingStorage for ReadCounting {
///     fn inner(&self) -> &dyn StreamStorage {
///         &*self.inner
///     }
///
///     async fn read(
///         &self,
///         name: &StreamName,
///         from: Option<Offset>,
///         limits: ReadLimits,
///     ) -> Result<ReadBatch, StorageError> {
///         self.reads.fetch_add(1, Ordering::Relaxed);
///         self.inner.read(name, from, limits).await
///     }
/// }
///
/// fn counted(inner: Arc<dyn StreamStorage>) -> Arc<dyn StreamStorage> {
///     Arc::new(ReadCounting { inner, reads: AtomicUsize::new(0) })
/// }
/// ```
#[async_trait]
pub trait ForwardingStorage: Send + Sync {
    /// The storage every call not overridden goes to.
    fn inner(&self) -> &dyn StreamStorage;

    /// See [`StreamStorage::create`].
    async fn create(
        &self,
        name: &StreamName,
        config: StreamConfig,
        initial: Vec<Bytes>,
    ) -> Result<CreateOutcome, StorageError> {
        self.inner().create(name, config, initial).await
    }

    /// See [`StreamStorage::append`].
    async fn append(
        &self,
        name: &StreamName,
        request: AppendRequest,
    ) -> Result<AppendOutcome, StorageError> {
        self.inner().append(name, request).await
    }

    /// See [`StreamStorage::read`].
    async fn read(
        &self,
        name: &StreamName,
        from: Option<Offset>,
        limits: ReadLimits,
    ) -> Result<ReadBatch, StorageError> {
        self.inner().read(name, from, limits).await
    }

    /// See [`StreamStorage::wait`].
    async fn wait(
        &self,
        name: &StreamName,
        after: &Offset,
        timeout: Duration,
    ) -> Result<WaitOutcome, StorageError> {
        self.inner().wait(name, after, timeout).await
    }

    /// See [`StreamStorage::head`].
    async fn head(&self, name: &StreamName) -> Result<StreamInfo, StorageError> {
        self.inner().head(name).await
    }

    /// See [`StreamStorage::delete`].
    async fn delete(&self, name: &StreamName) -> Result<(), StorageError> {
        self.inner().delete(name).await
    }

    /// See [`StreamStorage::append_keyed`].
    async fn append_keyed(
        &self,
        stream: &StreamName,
        records: Vec<KeyedRecord>,
        window: Duration,
    ) -> Result<Vec<KeyedOutcome>, StorageError> {
        self.inner().append_keyed(stream, records, window).await
    }

    /// See [`StreamStorage::read_joined`]. Forwards to the inner storage's `read_joined`, not
    /// through this wrapper's `read`: a wrapper that overrides `read` to observe or change
    /// reads must override this too (the Durable Streams server reads through it).
    async fn read_joined(
        &self,
        name: &StreamName,
        from: ReadFrom,
        limits: ReadLimits,
        join: JoiningFor,
    ) -> Result<JoinedBatch, StorageError> {
        self.inner().read_joined(name, from, limits, join).await
    }

    /// See [`StreamStorage::capabilities`].
    fn capabilities(&self) -> StorageCapabilities {
        self.inner().capabilities()
    }
}

#[async_trait]
impl<T: ForwardingStorage> StreamStorage for T {
    async fn create(
        &self,
        name: &StreamName,
        config: StreamConfig,
        initial: Vec<Bytes>,
    ) -> Result<CreateOutcome, StorageError> {
        ForwardingStorage::create(self, name, config, initial).await
    }
    async fn append(
        &self,
        name: &StreamName,
        request: AppendRequest,
    ) -> Result<AppendOutcome, StorageError> {
        ForwardingStorage::append(self, name, request).await
    }
    async fn read(
        &self,
        name: &StreamName,
        from: Option<Offset>,
        limits: ReadLimits,
    ) -> Result<ReadBatch, StorageError> {
        ForwardingStorage::read(self, name, from, limits).await
    }
    async fn wait(
        &self,
        name: &StreamName,
        after: &Offset,
        timeout: Duration,
    ) -> Result<WaitOutcome, StorageError> {
        ForwardingStorage::wait(self, name, after, timeout).await
    }
    async fn head(&self, name: &StreamName) -> Result<StreamInfo, StorageError> {
        ForwardingStorage::head(self, name).await
    }
    async fn delete(&self, name: &StreamName) -> Result<(), StorageError> {
        ForwardingStorage::delete(self, name).await
    }
    async fn append_keyed(
        &self,
        stream: &StreamName,
        records: Vec<KeyedRecord>,
        window: Duration,
    ) -> Result<Vec<KeyedOutcome>, StorageError> {
        ForwardingStorage::append_keyed(self, stream, records, window).await
    }
    async fn read_joined(
        &self,
        name: &StreamName,
        from: ReadFrom,
        limits: ReadLimits,
        join: JoiningFor,
    ) -> Result<JoinedBatch, StorageError> {
        ForwardingStorage::read_joined(self, name, from, limits, join).await
    }
    fn capabilities(&self) -> StorageCapabilities {
        ForwardingStorage::capabilities(self)
    }
}
