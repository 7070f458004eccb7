//! [`RedisStreamStorage`]: streams in Redis, shared by every node.
//!
//! Per stream: a meta hash (`<prefix>:m:<name>`), one Redis Stream of records
//! (`<prefix>:d:<name>:<generation>`, entry id `<index+1>-0`, read with `XRANGE`), and a producers
//! hash (`<prefix>:p:<name>:<generation>`), and a keyed append's dedup keys
//! (`<prefix>:k:<generation>:<key>`, see `storage/keyed.rs`). `generation` comes from a counter at creation, so a deleted and
//! re-created stream never sees the old one's records or producer state. Writes are atomic Lua
//! compare-and-sets on the meta's `ver` around the shared Rust rules (see `scripts.rs`);
//! concurrent appends to one stream on one node are decided together and committed by one
//! script call (`append_queue.rs`);
//! TTL streams also get key expiry (window + 60 s) as a reclamation backstop, while the exact
//! expiry decision is made on every access. Waits are woken through one pub/sub connection
//! per instance, so appends on any node wake waits on every node.

mod forks;
mod keyed;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use courier_traits::storage::{
    CreateOutcome, KeyedOutcome, KeyedRecord, Offset, ReadBatch, ReadLimits, StorageCapabilities,
    StorageError, StreamConfig, StreamInfo, StreamName, WaitOutcome,
};
use redis::streams::StreamRangeReply;
use redis::{self, AsyncConnectionConfig};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::cas::{CasRetry, contention, eval};
use super::connection::{Connection, SharedConnection};
use super::durability::warn_unless_durable;
use super::errors::storage_error;
use super::meta::{Meta, expiry_backstop};
use super::meta_cache::MetaCache;
use super::scripts;
use super::storage_config::RedisStorageConfig;
use super::wakeups::{listen, subscribe_notifications};
use crate::append_queue::{
    AppendQueue, CommitBatch, PendingAppend, stream_storage_with_append_queue,
};
use crate::keyed_lock::KeyedLocks;
use crate::rules::{
    AppendBatch, ProducerState, check_record_sizes, fork_settings, index_offset, own_settings,
    producer_ids, reject_self_fork, validate_keyed,
};
use crate::sql_model::{
    collect_batch, encode_expiry, existing_stream_outcome, now_ms, requested_key, start_index,
    wait_on_row,
};
use crate::wakers::Wakers;

/// How long opening a connection may take before it fails with a retryable error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Streams in Redis. Clones share the connection, the append queue and the notification
/// listener.
///
/// ```no_run
/// # async fn demo() -> Result<(), courier_traits::StorageError> {
/// use courier_impls::redis::{RedisStorageConfig, RedisStreamStorage};
/// use courier_traits::storage::*;
///
/// let store = RedisStreamStorage::connect("redis://127.0.0.1:6379/", RedisStorageConfig::default()).await?;
/// let name = StreamName::new("orders")?;
/// store.create(&name, StreamConfig::with_content_type("application/json"), vec![]).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStreamStorage {
    store: Arc<RedisStore>,
    /// Appends, committed in batches per stream (see `append_queue.rs`).
    appends: AppendQueue,
}

/// What every operation works on; the append queue's task holds it too.
struct RedisStore {
    conn: Arc<SharedConnection>,
    config: Arc<RedisStorageConfig>,
    wakers: Arc<Wakers>,
    /// Serialises this process's writes per stream (see `keyed_lock.rs`).
    writes: Arc<KeyedLocks>,
    /// The meta after this process's last commit per stream (see `meta_cache.rs`).
    metas: MetaCache,
    _listener: Arc<DropGuard>,
}

impl RedisStreamStorage {
    /// Connects to the server at `url` and starts the notification listener. Logs a warning
    /// when the server's persistence settings do not make appends durable
    /// ([`server_durability`](super::server_durability)).
    pub async fn connect(
        url: &str,
        config: RedisStorageConfig,
    ) -> Result<RedisStreamStorage, StorageError> {
        let client = redis::Client::open(url).map_err(|e| storage_error("url", e))?;
        let connection = AsyncConnectionConfig::new()
            .set_response_timeout(config.response_timeout)
            // A connection that failed is replaced by a new one, and a frozen server also
            // stalls the new connection's handshake: bound it by the response timeout too,
            // or a 300 ms setting would answer after 5 s.
            .set_connection_timeout(Some(
                config
                    .response_timeout
                    .map_or(CONNECT_TIMEOUT, |t| t.min(CONNECT_TIMEOUT)),
            ));
        let shared = Arc::new(SharedConnection::new(client.clone(), connection));
        let mut conn = shared
            .get()
            .await
            .map_err(|e| storage_error("connection", e))?;
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| storage_error("ping", e))?;
        warn_unless_durable(&mut conn, "RedisStreamStorage").await;
        let wakers = Arc::new(Wakers::default());
        let stop = CancellationToken::new();
        let channel = format!("{}:n", config.key_prefix);
        let pubsub = subscribe_notifications(&client, &channel).await?;
        tokio::spawn(listen(
            client,
            channel,
            pubsub,
            wakers.clone(),
            stop.clone(),
        ));
        let store = Arc::new(RedisStore {
            conn: shared,
            config: Arc::new(config),
            wakers,
            writes: Arc::default(),
            metas: MetaCache::default(),
            _listener: Arc::new(stop.drop_guard()),
        });
        Ok(RedisStreamStorage {
            appends: AppendQueue::start(store.clone()),
            store,
        })
    }
}

impl RedisStore {
    /// The time expiry is decided against.
    fn now(&self) -> i64 {
        now_ms(&*self.config.clock)
    }

    fn meta_key(&self, name: &str) -> String {
        format!("{}:m:{name}", self.config.key_prefix)
    }
    fn data_key(&self, name: &str, generation: &str) -> String {
        format!("{}:d:{name}:{generation}", self.config.key_prefix)
    }
    fn producers_key(&self, name: &str, generation: &str) -> String {
        format!("{}:p:{name}:{generation}", self.config.key_prefix)
    }
    fn channel(&self) -> String {
        format!("{}:n", self.config.key_prefix)
    }

    async fn conn(&self) -> Result<Connection, StorageError> {
        self.conn
            .get()
            .await
            .map_err(|e| storage_error("connection", e))
    }

    async fn load(&self, name: &str) -> Result<Option<Meta>, StorageError> {
        let mut conn = self.conn().await?;
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.meta_key(name))
            .query_async(&mut conn)
            .await
            .map_err(|e| storage_error("hgetall", e))?;
        if fields.is_empty() {
            return Ok(None);
        }
        Meta::decode(fields)
            .map(Some)
            .ok_or_else(|| StorageError::Backend {
                message: format!("stream {name}: meta hash is not in Courier's format"),
                source: None,
            })
    }

    /// The live stream `name`; an expired one is reaped (NotFound), a soft-deleted one is Gone.
    async fn load_live(&self, name: &StreamName) -> Result<Meta, StorageError> {
        match self.load(name.as_str()).await? {
            None => Err(StorageError::NotFound {
                stream: name.clone(),
            }),
            Some(meta) if meta.row.soft_deleted => Err(StorageError::Gone {
                stream: name.clone(),
            }),
            Some(meta) if meta.row.is_expired(self.now()) => {
                self.remove(name, true).await?;
                match self.load(name.as_str()).await? {
                    Some(meta) if meta.row.soft_deleted => Err(StorageError::Gone {
                        stream: name.clone(),
                    }),
                    _ => Err(StorageError::NotFound {
                        stream: name.clone(),
                    }),
                }
            }
            Some(meta) => Ok(meta),
        }
    }

    /// Records at indexes `from..to` of a data stream.
    async fn range(&self, data_key: &str, from: u64, to: u64) -> Result<Vec<Bytes>, StorageError> {
        if to <= from {
            return Ok(Vec::new());
        }
        let mut conn = self.conn().await?;
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(data_key)
            .arg(format!("{}-0", from + 1))
            .arg(format!("{to}-0"))
            .query_async(&mut conn)
            .await
            .map_err(|e| storage_error("xrange", e))?;
        Ok(reply
            .ids
            .iter()
            .map(|entry| Bytes::from(entry.get::<Vec<u8>>("d").unwrap_or_default()))
            .collect())
    }
}

impl RedisStore {
    async fn create(
        &self,
        name: &StreamName,
        config: StreamConfig,
        initial: Vec<Bytes>,
    ) -> Result<CreateOutcome, StorageError> {
        check_record_sizes(&initial, self.config.max_record_bytes)?;
        let _serialised = self.writes.lock(name.as_str()).await;
        let mut retry = CasRetry::new();
        loop {
            let existing = self.load_live(name).await.map(|meta| meta.row);
            if let Some(outcome) = existing_stream_outcome(existing, name, &config) {
                return outcome;
            }
            let (content_type, expiry, source) = match &config.fork {
                None => {
                    let (content_type, expiry) = own_settings(&config);
                    (content_type, expiry, None)
                }
                Some(fork) => {
                    reject_self_fork(name, fork)?;
                    let source = self
                        .load_live(&fork.source)
                        .await
                        .map_err(|e| e.for_fork_source(&fork.source))?;
                    let (content_type, expiry) =
                        fork_settings(name, &config, source.row.as_fork_source())?;
                    (content_type, expiry, Some((fork, source)))
                }
            };
            let mut records = match &source {
                Some((fork, meta)) => self.fork_prefix(&fork.source, meta, fork).await?,
                None => Vec::new(),
            };
            records.extend(initial.iter().cloned());
            let mut conn = self.conn().await?;
            let generation: i64 = redis::cmd("INCR")
                .arg(format!("{}:gen", self.config.key_prefix))
                .query_async(&mut conn)
                .await
                .map_err(|e| storage_error("incr", e))?;
            let generation = generation.to_string();
            let (expiry_kind, expiry_ms) = encode_expiry(expiry);
            let now = self.now();
            let fields: Vec<(&str, String)> = vec![
                ("ver", "1".into()),
                ("gen", generation.clone()),
                ("content_type", content_type.clone()),
                ("expiry_kind", expiry_kind.to_string()),
                ("expiry_ms", expiry_ms.to_string()),
                ("requested", requested_key(&config)),
                ("closed", i64::from(config.closed).to_string()),
                ("next_index", records.len().to_string()),
                ("last_access_ms", now.to_string()),
                (
                    "parent",
                    source
                        .as_ref()
                        .map(|(f, _)| f.source.to_string())
                        .unwrap_or_default(),
                ),
                ("live_forks", "0".into()),
                ("soft_deleted", "0".into()),
            ];
            let source_meta = match &source {
                Some((fork, _)) => self.meta_key(fork.source.as_str()),
                None => self.meta_key(name.as_str()),
            };
            let keys = [
                self.meta_key(name.as_str()),
                self.data_key(name.as_str(), &generation),
                source_meta,
            ];
            let mut invocation = eval(scripts::CREATE, &keys);
            invocation
                .arg(
                    source
                        .as_ref()
                        .map(|(_, meta)| meta.ver.clone())
                        .unwrap_or_default(),
                )
                .arg(records.len());
            for record in &records {
                invocation.arg(&record[..]);
            }
            invocation.arg(fields.len());
            for (key, value) in &fields {
                invocation.arg(*key).arg(value);
            }
            invocation.arg(expiry_backstop(expiry_kind, expiry_ms, now));
            let created: i64 = invocation
                .query_async(&mut conn)
                .await
                .map_err(|e| storage_error("create", e))?;
            if created == 1 {
                return Ok(CreateOutcome::Created(StreamInfo {
                    name: name.clone(),
                    content_type,
                    expiry,
                    next_offset: index_offset::encode(records.len() as u64),
                    closed: config.closed,
                }));
            }
            if !retry.again().await {
                return Err(contention(name));
            }
        }
    }

    async fn append_keyed(
        &self,
        stream: &StreamName,
        records: Vec<KeyedRecord>,
        window: Duration,
    ) -> Result<Vec<KeyedOutcome>, StorageError> {
        validate_keyed(&records, self.config.max_record_bytes)?;
        self.keyed_append(stream, records, window).await
    }

    async fn read(
        &self,
        name: &StreamName,
        from: Option<Offset>,
        limits: ReadLimits,
    ) -> Result<ReadBatch, StorageError> {
        let meta = self.load_live(name).await?;
        let start = start_index(name, &meta.row, from.as_ref())?;
        let now = self.now();
        if meta.row.needs_touch(now) {
            let mut conn = self.conn().await?;
            let mut pipe = redis::pipe();
            pipe.hset(self.meta_key(name.as_str()), "last_access_ms", now)
                .ignore();
            let backstop = meta.pexpire_ms(now);
            if backstop > 0 {
                for key in [
                    self.meta_key(name.as_str()),
                    self.data_key(name.as_str(), &meta.generation),
                    self.producers_key(name.as_str(), &meta.generation),
                ] {
                    pipe.pexpire(key, backstop).ignore();
                }
            }
            pipe.query_async::<()>(&mut conn)
                .await
                .map_err(|e| storage_error("touch", e))?;
        }
        let end = meta
            .row
            .next_index
            .min(start.saturating_add(limits.max_records as u64));
        let records = self
            .range(&self.data_key(name.as_str(), &meta.generation), start, end)
            .await?;
        collect_batch(
            meta.row,
            start,
            limits,
            futures::stream::iter(records.into_iter().map(|r| Ok(r.to_vec()))),
        )
        .await
    }

    async fn wait(
        &self,
        name: &StreamName,
        after: &Offset,
        timeout: Duration,
    ) -> Result<WaitOutcome, StorageError> {
        wait_on_row(&self.wakers, name, after, timeout, || async {
            self.load_live(name).await.map(|m| m.row)
        })
        .await
    }

    async fn head(&self, name: &StreamName) -> Result<StreamInfo, StorageError> {
        Ok(self.load_live(name).await?.row.info(name))
    }

    async fn delete(&self, name: &StreamName) -> Result<(), StorageError> {
        self.load_live(name).await?;
        self.remove(name, false).await
    }

    fn capabilities(&self) -> StorageCapabilities {
        StorageCapabilities {
            durable: true,
            shared: true,
            ttl: true,
            producers: true,
            forks: true,
            survives_restart: true,
            keyed_append: true,
            max_record_bytes: Some(self.config.max_record_bytes),
        }
    }
}

#[async_trait]
impl CommitBatch for RedisStore {
    async fn commit(
        &self,
        name: &StreamName,
        batch: &mut [PendingAppend],
    ) -> Result<(), StorageError> {
        let _serialised = self.writes.lock(name.as_str()).await;
        let ids: Vec<String> = producer_ids(batch.iter().map(|a| &a.request))
            .into_iter()
            .map(str::to_owned)
            .collect();
        let mut retry = CasRetry::new();
        let now = self.now();
        let mut cached = self
            .metas
            .take(name.as_str())
            .filter(|meta| !meta.row.soft_deleted && !meta.row.is_expired(now));
        loop {
            let from_cache = cached.is_some();
            let meta = match cached.take() {
                Some(meta) => meta,
                None => self.load_live(name).await?,
            };
            let producers_key = self.producers_key(name.as_str(), &meta.generation);
            let mut conn = self.conn().await?;
            let stored = if ids.is_empty() {
                HashMap::new()
            } else {
                let values: Vec<Option<String>> = redis::cmd("HMGET")
                    .arg(&producers_key)
                    .arg(&ids)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| storage_error("hmget", e))?;
                ids.iter()
                    .zip(values)
                    .filter_map(|(id, value)| Some((id.clone(), decode_producer(&value?)?)))
                    .collect()
            };
            let now = self.now();
            let backstop = meta.pexpire_ms(now);
            let mut decided = AppendBatch::new(name, meta.row.clone(), stored);
            for append in batch.iter_mut() {
                append.result = Some(decided.decide(&append.request));
            }
            if !decided.changed() {
                if from_cache {
                    // Refusals and duplicates write nothing, so no compare-and-set vouches
                    // for the remembered meta they were decided on (the stream may have been
                    // re-created, re-opened, or moved on by another node): decide again from
                    // the stored meta.
                    continue;
                }
                self.metas.put(name.as_str(), meta);
                return Ok(());
            }
            let row = decided.row();
            let mut fields: Vec<(&str, String)> = vec![
                ("next_index", row.next_index.to_string()),
                ("last_access_ms", now.to_string()),
            ];
            if let Some(seq) = &row.writer_seq {
                fields.push(("writer_seq", seq.clone()));
            }
            if row.closed {
                fields.push(("closed", "1".into()));
                if let Some(p) = &row.closed_by {
                    fields.push(("closed_by", format!("{} {} {}", p.epoch, p.seq, p.id)));
                }
            }
            let keys = [
                self.meta_key(name.as_str()),
                self.data_key(name.as_str(), &meta.generation),
                producers_key,
                self.channel(),
            ];
            let mut invocation = eval(scripts::COMMIT, &keys);
            invocation
                .arg(meta.cas_token())
                .arg(decided.first_index())
                .arg(decided.records().len());
            for record in decided.records() {
                invocation.arg(&record[..]);
            }
            invocation.arg(fields.len());
            for (key, value) in &fields {
                invocation.arg(*key).arg(value);
            }
            let producers: Vec<(&str, ProducerState)> = decided.changed_producers().collect();
            invocation.arg(producers.len());
            for (id, state) in producers {
                invocation
                    .arg(id)
                    .arg(format!("{} {}", state.epoch, state.last_seq));
            }
            invocation.arg(name.as_str()).arg(backstop);
            let committed: i64 = invocation
                .query_async(&mut conn)
                .await
                .map_err(|e| storage_error("append", e))?;
            if committed == 1 {
                let mut row = decided.row().clone();
                row.last_access_ms = now;
                if let Some(after) = meta.after_commit(row) {
                    self.metas.put(name.as_str(), after);
                }
                return Ok(());
            }
            if from_cache {
                // Someone else changed the stream since this process's last commit: no
                // contention with a live writer yet, so read the meta and try at once.
                continue;
            }
            if !retry.again().await {
                return Err(contention(name));
            }
        }
    }
}

/// A stored producer state, `<epoch> <last_seq>`.
fn decode_producer(value: &str) -> Option<ProducerState> {
    let (epoch, seq) = value.split_once(' ')?;
    Some(ProducerState {
        epoch: epoch.parse().ok()?,
        last_seq: seq.parse().ok()?,
    })
}

stream_storage_with_append_queue!(RedisStreamStorage);
