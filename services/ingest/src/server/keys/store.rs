//! [`StorageKeyStore`]: a [`KeyStore`] over the [`KeyLog`], kept current by a tail task that
//! waits on the log's stream, so a key created or revoked through any node holds on this one
//! within the storage's wake-up latency, and within `max_staleness` at worst: past that without
//! a successful read, lookups fail (503) instead of trusting a table that may miss revocations.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use courier_traits::storage::{StreamStorage, WaitOutcome};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::log::{KeyLog, KeyLogError};
use crate::server::auth::{KeyDigest, KeyRecord, KeyStore, KeyStoreError};

/// How a [`StorageKeyStore`] follows the log.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct TailConfig {
    /// Longest wait on the stream before reading anyway (default 1 s): the periodic read also
    /// proves the storage still answers, and covers a missed wake-up.
    pub refresh: Duration,
    /// Lookups fail when no read that started within this long succeeded (default 3 s, so a
    /// revocation holds everywhere within 5 s even when the storage is slow or down).
    pub max_staleness: Duration,
}

impl Default for TailConfig {
    fn default() -> Self {
        Self {
            refresh: Duration::from_secs(1),
            max_staleness: Duration::from_secs(3),
        }
    }
}

impl TailConfig {
    /// Sets [`TailConfig::refresh`].
    pub fn with_refresh(mut self, refresh: Duration) -> Self {
        self.refresh = refresh;
        self
    }

    /// Sets [`TailConfig::max_staleness`].
    pub fn with_max_staleness(mut self, max_staleness: Duration) -> Self {
        self.max_staleness = max_staleness;
        self
    }
}

/// API keys from the key log of a storage, followed by a background task (stopped by
/// [`StorageKeyStore::close`] or when the store is dropped).
pub struct StorageKeyStore {
    log: Arc<KeyLog>,
    config: TailConfig,
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for StorageKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageKeyStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl StorageKeyStore {
    /// Opens the key log of `storage` and starts following it. Must run inside a tokio runtime.
    pub async fn open(storage: Arc<dyn StreamStorage>) -> Result<Self, KeyLogError> {
        let log = KeyLog::open(storage).await?;
        Ok(Self::start(Arc::new(log), TailConfig::default()))
    }

    /// Follows an opened `log`. Must run inside a tokio runtime.
    pub fn start(log: Arc<KeyLog>, config: TailConfig) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(tail(Arc::clone(&log), config.refresh, stop.clone()));
        Self {
            log,
            config,
            stop,
            task: Mutex::new(Some(task)),
        }
    }

    /// The log, for creating, revoking and listing keys.
    pub fn log(&self) -> &Arc<KeyLog> {
        &self.log
    }

    /// Stops the tail task and waits for it; lookups fail once the table is stale.
    pub async fn close(&self) {
        self.stop.cancel();
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Drop for StorageKeyStore {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn tail(log: Arc<KeyLog>, refresh: Duration, stop: CancellationToken) {
    loop {
        let read = tokio::select! {
            () = stop.cancelled() => return,
            read = log.sync() => read,
        };
        let pause = match read {
            Ok(()) => {
                let waited = tokio::select! {
                    () = stop.cancelled() => return,
                    waited = log.wait(refresh) => waited,
                };
                match waited {
                    Ok(WaitOutcome::Ready | WaitOutcome::TimedOut) => false,
                    // A closed log takes no more records; wait returns at once from now on.
                    Ok(WaitOutcome::Closed) => true,
                    Err(e) => {
                        tracing::warn!(error = %e, "waiting on the key log failed");
                        true
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the key log failed");
                true
            }
        };
        if pause {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(refresh) => {}
            }
        }
    }
}

#[async_trait]
impl KeyStore for StorageKeyStore {
    async fn lookup(&self, digest: &KeyDigest) -> Result<Vec<KeyRecord>, KeyStoreError> {
        if !self.log.synced_within(self.config.max_staleness) {
            return Err(KeyStoreError(format!(
                "the key log could not be read for over {:?}",
                self.config.max_staleness
            )));
        }
        Ok(self.log.lookup(digest))
    }
}
