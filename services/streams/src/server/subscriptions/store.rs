//! [`Store`]: subscription state kept in reserved streams of the [`StreamStorage`], so every
//! node of a shared storage sees the same subscriptions and a restart loses nothing.
//!
//! * `__ds/index`: which subscriptions exist (`add` / `remove` records).
//! * `__ds/subscriptions/<id>`: one log per subscription, its creation first, then every
//!   change ([`Entry`], one record per change). Each change is appended with the writer
//!   sequence "number of records after it", so the storage accepts it only if no other node
//!   appended since this node read the log: a compare-and-set that makes two nodes racing to start the same wake produce
//!   one wake, and one delivery.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use courier_traits::storage::{
    AppendRequest, CreateOutcome, Offset, ReadLimits, StorageError, StreamConfig, StreamName,
    StreamStorage,
};
use serde_json::{Value, json};

use super::model::{Entry, Event, Subscription};

/// The stream listing the subscriptions.
const INDEX_STREAM: &str = "__ds/index";
/// The prefix of each subscription's log stream.
const LOG_PREFIX: &str = "__ds/subscriptions/";
/// The content type of every internal stream (one JSON value per record).
const JSON: &str = "application/json";
/// A log whose incarnation changes under a reader this many times in one load is left alone.
const MAX_RELOADS: usize = 3;

/// A subscription as read from its log, with where reading stopped.
#[derive(Clone, Debug)]
pub(crate) struct Loaded {
    pub(crate) sub: Subscription,
    /// Records in the log so far.
    version: u64,
    /// Where the next read starts.
    cursor: Offset,
}

/// The subscriptions' streams.
pub(crate) struct Store {
    storage: Arc<dyn StreamStorage>,
    cache: Mutex<HashMap<String, Loaded>>,
    index: Mutex<IndexView>,
    index_created: AtomicBool,
}

#[derive(Default)]
struct IndexView {
    ids: BTreeSet<String>,
    cursor: Option<Offset>,
}

/// A subscription id usable as the last segment of its log's stream name.
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty() && !id.contains('/') && StreamName::new(&format!("{LOG_PREFIX}{id}")).is_ok()
}

fn log_name(id: &str) -> Result<StreamName, StorageError> {
    Ok(StreamName::new(&format!("{LOG_PREFIX}{id}"))?)
}

fn corrupt(what: String) -> StorageError {
    StorageError::Backend {
        message: what,
        source: None,
    }
}

impl Store {
    pub(crate) fn new(storage: Arc<dyn StreamStorage>) -> Store {
        Store {
            storage,
            cache: Mutex::new(HashMap::new()),
            index: Mutex::new(IndexView::default()),
            index_created: AtomicBool::new(false),
        }
    }

    pub(crate) fn storage(&self) -> &dyn StreamStorage {
        &*self.storage
    }

    fn cached(&self, id: &str) -> Option<Loaded> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.get(id).cloned()
    }

    fn remember(&self, id: &str, loaded: Option<&Loaded>) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        match loaded {
            Some(loaded) => {
                cache.insert(id.to_owned(), loaded.clone());
            }
            None => {
                cache.remove(id);
            }
        }
    }

    /// Whether an append to `path` may concern subscription `id`: `false` only when this node
    /// holds the subscription, its pattern does not match and it has no link to `path`. The
    /// index is read just before: a change of explicit links is listed there, which drops
    /// the held state, so held state never misses a link.
    pub(crate) fn may_concern(&self, id: &str, path: &str) -> bool {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(loaded) = cache.get(id) else {
            return true;
        };
        let sub = &loaded.sub;
        sub.links.contains_key(path)
            || sub
                .config
                .pattern
                .as_deref()
                .is_some_and(|p| super::glob::matches(p, path))
    }

    /// The subscriptions this node holds in memory (possibly behind their logs).
    pub(crate) fn cached_all(&self) -> Vec<Subscription> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.values().map(|l| l.sub.clone()).collect()
    }

    /// The subscription as its log stands now (`None`: no such subscription).
    pub(crate) async fn load(&self, id: &str) -> Result<Option<Loaded>, StorageError> {
        let name = log_name(id)?;
        // The index first: a delete and re-create elsewhere drops the held state. Without it a
        // new log with as many records as the old one looks "up to date" from the held read
        // position, and this node would act on (and append) the old incarnation.
        self.ids().await?;
        let mut current = self.cached(id);
        // Whether `current` was read from the creation record in this load: then a record of
        // another incarnation is one a stale node appended after it, skipped; in held state
        // it means the log was replaced, and reading starts over.
        let mut from_creation = false;
        let mut skipped = 0u64;
        let mut reloads = 0;
        loop {
            let from = current.as_ref().map(|l| l.cursor.clone());
            let batch = match self.storage.read(&name, from, ReadLimits::default()).await {
                Ok(batch) => batch,
                Err(StorageError::NotFound { .. } | StorageError::Gone { .. }) => {
                    self.remember(id, None);
                    return Ok(None);
                }
                // The log was deleted and created again: this node's position means nothing.
                Err(StorageError::UnknownOffset { .. }) if current.is_some() => {
                    current = None;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut restart = false;
            for record in &batch.records {
                let entry: Entry = serde_json::from_slice(&record.data).map_err(|e| {
                    corrupt(format!("subscription log {name} holds a bad record: {e}"))
                })?;
                match &mut current {
                    Some(loaded) if loaded.sub.inc == entry.inc => {
                        for event in &entry.events {
                            loaded.sub.apply(event);
                        }
                        loaded.version += 1;
                    }
                    // Still a record: it counts for the compare-and-set's writer sequence.
                    Some(loaded) if from_creation => {
                        loaded.version += 1;
                        skipped += 1;
                    }
                    Some(_) => {
                        restart = true;
                        break;
                    }
                    None => {
                        from_creation = true;
                        let sub = Subscription::from_created(id, &entry).ok_or_else(|| {
                            corrupt(format!(
                                "subscription log {name} does not start with its creation"
                            ))
                        })?;
                        current = Some(Loaded {
                            sub,
                            version: 1,
                            cursor: record.offset.clone(),
                        });
                    }
                }
            }
            if restart {
                reloads += 1;
                if reloads > MAX_RELOADS {
                    return Err(StorageError::Unavailable {
                        message: format!("subscription log {name} keeps being replaced"),
                        source: None,
                    });
                }
                current = None;
                continue;
            }
            if skipped > 0 {
                tracing::warn!(log = %name, skipped, "skipped records of an earlier incarnation");
                skipped = 0;
            }
            let Some(loaded) = current.as_mut() else {
                // An empty log: created and not written yet, or being replaced.
                return Ok(None);
            };
            loaded.cursor = batch.next_offset.clone();
            if batch.records.is_empty() || batch.up_to_date {
                self.remember(id, Some(loaded));
                return Ok(current);
            }
        }
    }

    /// Creates the log of `id` starting with `created`; `false` if it already existed.
    pub(crate) async fn create(&self, id: &str, created: &Entry) -> Result<bool, StorageError> {
        let record = serde_json::to_vec(created)
            .map_err(|e| corrupt(format!("cannot encode a subscription: {e}")))?;
        let outcome = self
            .storage
            .create(
                &log_name(id)?,
                StreamConfig::with_content_type(JSON),
                vec![Bytes::from(record)],
            )
            .await?;
        Ok(matches!(outcome, CreateOutcome::Created(_)))
    }

    /// Appends `events` to the log of `loaded` if nothing was appended since it was read:
    /// the new state, or `None` when another writer came first (load again and decide again).
    pub(crate) async fn append(
        &self,
        loaded: &Loaded,
        events: &[Event],
    ) -> Result<Option<Loaded>, StorageError> {
        let entry = Entry {
            inc: loaded.sub.inc.clone(),
            events: events.to_vec(),
        };
        let record = serde_json::to_vec(&entry)
            .map_err(|e| corrupt(format!("cannot encode a subscription change: {e}")))?;
        // One record per change: the writer sequence counts changes, so any change appended
        // since `loaded` was read makes this one sort at or below the last accepted.
        let version = loaded.version + 1;
        let request = AppendRequest::record(record)
            .with_content_type(JSON)
            .with_writer_seq(format!("{version:020}"));
        let id = &loaded.sub.id;
        match self.storage.append(&log_name(id)?, request).await {
            Ok(outcome) => {
                let mut next = loaded.clone();
                for event in events {
                    next.sub.apply(event);
                }
                next.version = version;
                next.cursor = outcome.next_offset;
                self.remember(id, Some(&next));
                Ok(Some(next))
            }
            Err(StorageError::WriterSeqRegression { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes the log of `id` (already gone is fine).
    pub(crate) async fn delete(&self, id: &str) -> Result<(), StorageError> {
        self.remember(id, None);
        match self.storage.delete(&log_name(id)?).await {
            Ok(()) | Err(StorageError::NotFound { .. } | StorageError::Gone { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn index_name(&self) -> Result<StreamName, StorageError> {
        let name = StreamName::new(INDEX_STREAM)?;
        if !self.index_created.load(Ordering::Acquire) {
            self.storage
                .create(&name, StreamConfig::with_content_type(JSON), vec![])
                .await?;
            self.index_created.store(true, Ordering::Release);
        }
        Ok(name)
    }

    /// Records that `id` exists (`true`; again when its explicit links change) or no longer
    /// does.
    pub(crate) async fn set_listed(&self, id: &str, listed: bool) -> Result<(), StorageError> {
        let name = self.index_name().await?;
        let record = json!({ "op": if listed { "add" } else { "remove" }, "id": id });
        self.storage
            .append(
                &name,
                AppendRequest::record(record.to_string()).with_content_type(JSON),
            )
            .await?;
        Ok(())
    }

    /// Every subscription id, read up to the index's tail.
    pub(crate) async fn ids(&self) -> Result<Vec<String>, StorageError> {
        let name = self.index_name().await?;
        loop {
            let from = {
                let view = self.index.lock().unwrap_or_else(PoisonError::into_inner);
                view.cursor.clone()
            };
            let batch = self
                .storage
                .read(&name, from.clone(), ReadLimits::default())
                .await?;
            let mut view = self.index.lock().unwrap_or_else(PoisonError::into_inner);
            // Another task read the same records meanwhile: read on from where it stopped.
            if view.cursor != from {
                continue;
            }
            for record in &batch.records {
                let Ok(value) = serde_json::from_slice::<Value>(&record.data) else {
                    continue;
                };
                let Some(id) = value.get("id").and_then(Value::as_str) else {
                    continue;
                };
                if value.get("op").and_then(Value::as_str) == Some("remove") {
                    view.ids.remove(id);
                    // A later subscription under this id is a new log: forget the old one.
                    self.remember(id, None);
                } else if !view.ids.insert(id.to_owned()) {
                    // Listed again: its explicit links changed; read its log afresh.
                    self.remember(id, None);
                }
            }
            view.cursor = Some(batch.next_offset.clone());
            if batch.records.is_empty() || batch.up_to_date {
                return Ok(view.ids.iter().cloned().collect());
            }
        }
    }
}
