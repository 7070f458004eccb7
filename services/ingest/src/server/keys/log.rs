//! [`KeyLog`]: the append-only log of key records in the stream `ingest-admin/keys` of any
//! [`StreamStorage`], read into memory. Creations and revocations are plain appends, which the
//! storage never refuses for racing writers, so two nodes creating keys at the same moment both
//! land; every node folds the same log into the same table.

use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use courier_traits::clock::{Clock, system_clock};
use courier_traits::error::{Classify, ErrorClass};
use courier_traits::storage::{
    AppendRequest, ReadLimits, StorageError, StreamConfig, StreamName, StreamStorage, WaitOutcome,
};
use rand::RngCore;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::time::Instant;

use super::entry::LogEntry;
use super::table::{KeyInfo, KeyTable};
use crate::server::auth::{KeyDigest, KeyRecord, is_valid_app_id};

/// The stream holding the key log.
pub const KEY_LOG_STREAM: &str = "ingest-admin/keys";

/// Longest key name accepted, in bytes.
pub const MAX_KEY_NAME_BYTES: usize = 256;

/// A key log operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyLogError {
    /// The storage failed; nothing is known to have been written.
    #[error("key log storage: {0}")]
    Storage(#[from] StorageError),
    /// An argument breaks a rule; the field is named.
    #[error("{field}: {reason}")]
    InvalidInput {
        /// The field (`app_id`, `name`).
        field: &'static str,
        /// The rule it breaks.
        reason: String,
    },
    /// No key has this id.
    #[error("no API key with id {0:?}")]
    UnknownKey(String),
}

impl Classify for KeyLogError {
    fn class(&self) -> ErrorClass {
        match self {
            KeyLogError::Storage(e) => e.class(),
            _ => ErrorClass::Permanent,
        }
    }
}

/// A key just created: the only time its plaintext exists outside its holder.
#[derive(Clone)]
pub struct CreatedKey {
    /// The key's record.
    pub info: KeyInfo,
    /// The key: 64 lowercase hex characters of 32 random bytes. Show it once; it is not stored.
    pub key: String,
}

impl fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key: debug output ends up in logs.
        f.debug_struct("CreatedKey")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// The key log of one storage, folded in memory. [`KeyLog::sync`] reads what other nodes
/// appended; [`StorageKeyStore`](super::StorageKeyStore) keeps calling it.
pub struct KeyLog {
    storage: Arc<dyn StreamStorage>,
    stream: StreamName,
    clock: Arc<dyn Clock>,
    table: RwLock<KeyTable>,
    /// When the last successful catch-up read started: the table holds at least every record
    /// appended before it.
    synced_at: Mutex<Option<Instant>>,
}

impl fmt::Debug for KeyLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyLog")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

fn rfc3339(ms: u64) -> String {
    let seconds = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

fn fresh_key() -> String {
    let mut bytes = [0_u8; 32];
    // The thread RNG is a CSPRNG seeded from the OS (rand's documented guarantee).
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl KeyLog {
    /// Opens the log of `storage` (creating its stream if needed) and reads it.
    pub async fn open(storage: Arc<dyn StreamStorage>) -> Result<Self, KeyLogError> {
        Self::open_with_clock(storage, system_clock()).await
    }

    /// [`KeyLog::open`] with the clock that dates creations and revocations.
    pub async fn open_with_clock(
        storage: Arc<dyn StreamStorage>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, KeyLogError> {
        let stream = StreamName::new(KEY_LOG_STREAM).map_err(StorageError::from)?;
        storage
            .create(
                &stream,
                StreamConfig::with_content_type("application/json"),
                Vec::new(),
            )
            .await?;
        let log = Self {
            storage,
            stream,
            clock,
            table: RwLock::new(KeyTable::default()),
            synced_at: Mutex::new(None),
        };
        log.sync().await?;
        Ok(log)
    }

    /// The storage the log lives in.
    pub fn storage(&self) -> &Arc<dyn StreamStorage> {
        &self.storage
    }

    fn table(&self) -> std::sync::RwLockReadGuard<'_, KeyTable> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the records appended since the last read, up to the tail.
    pub async fn sync(&self) -> Result<(), KeyLogError> {
        let started = Instant::now();
        let mut from = self.table().offset();
        loop {
            let batch = self
                .storage
                .read(&self.stream, from.clone(), ReadLimits::default())
                .await?;
            let records: Vec<&[u8]> = batch.records.iter().map(|r| r.data.as_ref()).collect();
            let advanced = from.as_ref() != Some(&batch.next_offset);
            {
                let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
                table.apply(&records, batch.next_offset.clone());
            }
            // A batch that does not move would be read again forever.
            if batch.up_to_date || !advanced {
                break;
            }
            from = Some(batch.next_offset);
        }
        let mut synced = self.synced_at.lock().unwrap_or_else(|e| e.into_inner());
        if synced.is_none_or(|at| at < started) {
            *synced = Some(started);
        }
        Ok(())
    }

    /// True if a catch-up read that started within `max_age` succeeded.
    pub(crate) fn synced_within(&self, max_age: Duration) -> bool {
        let synced = self.synced_at.lock().unwrap_or_else(|e| e.into_inner());
        synced.is_some_and(|at| at.elapsed() <= max_age)
    }

    /// Waits until records lie past what has been read, or `timeout` passes.
    pub(crate) async fn wait(&self, timeout: Duration) -> Result<WaitOutcome, KeyLogError> {
        let Some(offset) = self.table().offset() else {
            // Nothing read yet: let the caller read.
            return Ok(WaitOutcome::Ready);
        };
        Ok(self.storage.wait(&self.stream, &offset, timeout).await?)
    }

    /// The records that may have `digest` (see [`KeyStore::lookup`](crate::server::KeyStore)).
    pub(crate) fn lookup(&self, digest: &KeyDigest) -> Vec<KeyRecord> {
        self.table().lookup(digest)
    }

    async fn append(&self, entry: &LogEntry) -> Result<(), KeyLogError> {
        let request = AppendRequest::record(entry.to_json()).with_content_type("application/json");
        self.storage.append(&self.stream, request).await?;
        Ok(())
    }

    /// Creates a key for `app_id`: 32 random bytes as 64 lowercase hex, logged as its SHA-256
    /// only. The key is usable on this node when this returns, on others once they read it.
    pub async fn create_key(&self, app_id: &str, name: &str) -> Result<CreatedKey, KeyLogError> {
        if !is_valid_app_id(app_id) {
            return Err(KeyLogError::InvalidInput {
                field: "app_id",
                reason: "must match [A-Za-z0-9._~:@+=-]{1,128} and not be . or ..".into(),
            });
        }
        if name.len() > MAX_KEY_NAME_BYTES {
            return Err(KeyLogError::InvalidInput {
                field: "name",
                reason: format!("is longer than {MAX_KEY_NAME_BYTES} bytes"),
            });
        }
        let key = fresh_key();
        let info = KeyInfo {
            id: uuid::Uuid::now_v7().to_string(),
            app_id: app_id.to_owned(),
            name: name.to_owned(),
            created_at: rfc3339(self.clock.now_ms()),
            revoked_at: None,
        };
        self.append(&LogEntry::Created {
            id: info.id.clone(),
            app_id: info.app_id.clone(),
            name: info.name.clone(),
            sha256: KeyDigest::of_key(&key).to_hex(),
            created_at: info.created_at.clone(),
        })
        .await?;
        // The key exists from here on: a failed read-back must not lose its only plaintext.
        if let Err(e) = self.sync().await {
            tracing::warn!(key_id = %info.id, error = %e, "key created; reading the log back failed");
        }
        Ok(CreatedKey { info, key })
    }

    /// Revokes the key `id` (again: answers the first revocation without writing).
    pub async fn revoke(&self, id: &str) -> Result<KeyInfo, KeyLogError> {
        self.sync().await?;
        let Some(info) = self.table().get(id) else {
            return Err(KeyLogError::UnknownKey(id.to_owned()));
        };
        if info.revoked() {
            return Ok(info);
        }
        let revoked_at = rfc3339(self.clock.now_ms());
        self.append(&LogEntry::Revoked {
            id: id.to_owned(),
            revoked_at: revoked_at.clone(),
        })
        .await?;
        if let Err(e) = self.sync().await {
            tracing::warn!(key_id = %id, error = %e, "key revoked; reading the log back failed");
        }
        Ok(self.table().get(id).unwrap_or(KeyInfo {
            revoked_at: Some(revoked_at),
            ..info
        }))
    }

    /// The keys of `app_id` (every key for `None`), newest first, after reading the log.
    pub async fn list(&self, app_id: Option<&str>) -> Result<Vec<KeyInfo>, KeyLogError> {
        self.sync().await?;
        Ok(self.table().list(app_id))
    }
}
