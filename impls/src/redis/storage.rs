//! [`RedisStreamStorage`]: streams in Redis, shared by every node.
//!
//! Per stream: a meta hash (`<prefix>:m:<name>`), one Redis Stream of records
//! (`<prefix>:d:<name>:<generation>`, entry id `<index+1>-0`, read with `XRANGE`), and a producers
//! hash (`<prefix>:p:<name>:<generation>`). `generation` comes from a counter at creation, so a deleted and
//! re-created stream never sees the old one's records or producer state. Writes are atomic Lua
//! compare-and-sets on the meta's `ver` around the shared Rust rules (see `scripts.rs`);
//! TTL streams also get key expiry (window + 60 s) as a reclamation backstop, while the exact
//! expiry decision is made on every access. Waits are woken through one pub/sub connection
//! per instance, so appends on any node wake waits on every node.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use courier_traits::clock::{Clock, system_clock};
use courier_traits::storage::{
    AppendOutcome, AppendRequest, CreateOutcome, ForkFrom, Offset, ProducerStamp, ReadBatch,
    ReadLimits, StorageCapabilities, StorageError, StreamConfig, StreamInfo, StreamName,
    StreamStorage, WaitOutcome,
};
use deadpool_redis::redis::streams::StreamRangeReply;
use deadpool_redis::redis::{self, RedisError};
use deadpool_redis::{Config, Pool, Runtime};
use futures::StreamExt;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::durability::warn_unless_durable;
use super::errors::is_transient;
use super::scripts;
use crate::keyed_lock::KeyedLocks;
use crate::rules::{
    AppendContext, AppendPlan, ByteCut, ChainLink, ProducerState, Removal, RemoveChain,
    check_record_sizes, committed_outcome, fork_settings, index_offset, own_settings, plan_append,
    plan_fork, reject_self_fork, validate_append,
};
use crate::sql_model::{
    StreamRow, collect_batch, encode_expiry, existing_stream_outcome, now_ms, requested_key,
    start_index, wait_on_row,
};
use crate::wakers::Wakers;

/// How long a write keeps retrying when other nodes keep changing the stream first.
const CAS_DEADLINE: Duration = Duration::from_secs(10);
/// Extra lifetime given to TTL keys beyond the window, so Redis never drops a live stream.
const EXPIRY_GRACE_MS: i64 = 60_000;

/// Settings of a [`RedisStreamStorage`].
#[derive(Clone, Debug)]
pub struct RedisStorageConfig {
    /// Prefix of every key.
    pub key_prefix: String,
    /// Largest single record accepted (Redis caps a value at 512 MiB).
    pub max_record_bytes: usize,
    /// The clock expiry is decided against (default: the system clock). Redis's own key
    /// expiry, a backstop only, runs on the server's clock.
    pub clock: Arc<dyn Clock>,
}

impl Default for RedisStorageConfig {
    fn default() -> Self {
        RedisStorageConfig {
            key_prefix: "courier:streams".into(),
            max_record_bytes: 64 << 20,
            clock: system_clock(),
        }
    }
}

impl RedisStorageConfig {
    /// Decides expiry against `clock` (a test's manual clock) instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> RedisStorageConfig {
        self.clock = clock;
        self
    }
}

/// Streams in Redis. Clones share the pool and the notification listener.
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
    pool: Pool,
    config: Arc<RedisStorageConfig>,
    wakers: Arc<Wakers>,
    /// Serialises this process's writes per stream (see `keyed_lock.rs`).
    writes: Arc<KeyedLocks>,
    _listener: Arc<DropGuard>,
}

/// `EVAL script` with its keys; arguments follow with `.arg(..)`.
fn eval(script: &str, keys: &[String]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(keys.len());
    for key in keys {
        cmd.arg(key);
    }
    cmd
}

fn storage_error(what: &str, error: RedisError) -> StorageError {
    StorageError::backend(
        is_transient(&error),
        format!("redis {what}: {error}"),
        Some(Box::new(error)),
    )
}

fn pool_error(error: deadpool_redis::PoolError) -> StorageError {
    match error {
        deadpool_redis::PoolError::Backend(e) => storage_error("connection", e),
        other => StorageError::unavailable(format!("redis pool: {other}"), other),
    }
}

/// Paces compare-and-set retries: jittered exponential backoff up to a deadline.
struct CasRetry {
    deadline: tokio::time::Instant,
    pause: Duration,
}

impl CasRetry {
    fn new() -> CasRetry {
        CasRetry {
            deadline: tokio::time::Instant::now() + CAS_DEADLINE,
            pause: Duration::from_micros(200),
        }
    }

    /// Waits before the next attempt; false once the deadline has passed.
    async fn again(&mut self) -> bool {
        if tokio::time::Instant::now() >= self.deadline {
            return false;
        }
        let jitter = rand::random_range(0.5..1.0);
        tokio::time::sleep(self.pause.mul_f64(jitter)).await;
        self.pause = (self.pause * 2).min(Duration::from_millis(50));
        true
    }
}

fn contention(name: &StreamName) -> StorageError {
    StorageError::Unavailable {
        message: format!("stream {name} is changing too fast to write; retry"),
        source: None,
    }
}

/// A stream's meta hash, decoded.
struct Meta {
    row: StreamRow,
    ver: String,
    generation: String,
    parent: Option<String>,
    live_forks: i64,
}

impl Meta {
    fn decode(fields: HashMap<String, String>) -> Option<Meta> {
        let num = |k: &str| fields.get(k).and_then(|v| v.parse::<i64>().ok());
        let closed_by = fields
            .get("closed_by")
            .filter(|v| !v.is_empty())
            .and_then(|v| {
                let mut parts = v.splitn(3, ' ');
                let epoch = parts.next()?.parse().ok()?;
                let seq = parts.next()?.parse().ok()?;
                Some(ProducerStamp {
                    id: parts.next()?.to_owned(),
                    epoch,
                    seq,
                })
            });
        Some(Meta {
            row: StreamRow {
                content_type: fields.get("content_type")?.clone(),
                expiry_kind: num("expiry_kind")?,
                expiry_ms: num("expiry_ms")?,
                requested: fields.get("requested")?.clone(),
                closed: num("closed")? != 0,
                closed_by,
                writer_seq: fields.get("writer_seq").cloned(),
                next_index: num("next_index")? as u64,
                last_access_ms: num("last_access_ms")?,
                soft_deleted: num("soft_deleted").unwrap_or(0) != 0,
            },
            ver: fields.get("ver")?.clone(),
            generation: fields.get("gen")?.clone(),
            parent: fields.get("parent").filter(|p| !p.is_empty()).cloned(),
            live_forks: num("live_forks").unwrap_or(0),
        })
    }

    /// Key lifetime for the expiry backstop (0 = none): only TTL/absolute streams without forks.
    fn pexpire_ms(&self, now: i64) -> i64 {
        if self.live_forks > 0 {
            return 0;
        }
        expiry_backstop(self.row.expiry_kind, self.row.expiry_ms, now)
    }
}

fn expiry_backstop(kind: i64, ms: i64, now: i64) -> i64 {
    match kind {
        1 => ms + EXPIRY_GRACE_MS,
        2 => (ms - now).max(0) + EXPIRY_GRACE_MS,
        _ => 0,
    }
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
        let pool = Config::from_url(url)
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|e| StorageError::Backend {
                message: format!("redis pool: {e}"),
                source: Some(Box::new(e)),
            })?;
        let mut conn = pool.get().await.map_err(pool_error)?;
        let _: String = redis::cmd("PING")
            .query_async(&mut *conn)
            .await
            .map_err(|e| storage_error("ping", e))?;
        warn_unless_durable(&mut *conn, "RedisStreamStorage").await;
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
        Ok(RedisStreamStorage {
            pool,
            config: Arc::new(config),
            wakers,
            writes: Arc::default(),
            _listener: Arc::new(stop.drop_guard()),
        })
    }

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

    async fn conn(&self) -> Result<deadpool_redis::Connection, StorageError> {
        self.pool.get().await.map_err(pool_error)
    }

    async fn load(&self, name: &str) -> Result<Option<Meta>, StorageError> {
        let mut conn = self.conn().await?;
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.meta_key(name))
            .query_async(&mut *conn)
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

    /// Deletes `name` (soft while forks live), releasing fork sources up the chain as
    /// [`RemoveChain`] decides; each step is one compare-and-set script.
    /// `only_if_expired`: do nothing unless the stream has expired (reaping).
    async fn remove(&self, name: &StreamName, only_if_expired: bool) -> Result<(), StorageError> {
        let mut chain = RemoveChain::new(name);
        let mut first = true;
        while let Some(current) = chain.next() {
            let mut retry = CasRetry::new();
            loop {
                let meta = self.load(current.as_str()).await?;
                if first
                    && only_if_expired
                    && !meta
                        .as_ref()
                        .is_some_and(|m| !m.row.soft_deleted && m.row.is_expired(self.now()))
                {
                    return Ok(());
                }
                let Some(meta) = meta else {
                    return Ok(());
                };
                let parent = meta.parent.as_deref().and_then(|p| StreamName::new(p).ok());
                let (mode, parent) = match chain.decide(Some(ChainLink {
                    live_forks: meta.live_forks,
                    parent,
                })) {
                    Some(Removal::Soft) => ("soft", None),
                    Some(Removal::Hard { parent: None }) => ("hard", None),
                    Some(Removal::Hard {
                        parent: Some(parent),
                    }) => ("hard_fork", Some(parent)),
                    None => return Ok(()),
                };
                let keys = [
                    self.meta_key(current.as_str()),
                    self.data_key(current.as_str(), &meta.generation),
                    self.producers_key(current.as_str(), &meta.generation),
                    self.meta_key(parent.as_ref().unwrap_or(&current).as_str()),
                    self.channel(),
                ];
                let mut conn = self.conn().await?;
                let outcome: Vec<i64> = eval(scripts::REMOVE, &keys)
                    .arg(&meta.ver)
                    .arg(mode)
                    .arg(current.as_str())
                    .query_async(&mut *conn)
                    .await
                    .map_err(|e| storage_error("remove", e))?;
                match (outcome.as_slice(), &parent) {
                    ([0], _) if retry.again().await => continue,
                    ([0], _) => return Err(contention(&current)),
                    ([2, soft_deleted, live_forks], Some(parent)) => {
                        chain.released(parent, *soft_deleted != 0, *live_forks);
                    }
                    _ => {}
                }
                break;
            }
            first = false;
        }
        Ok(())
    }

    /// The records a fork inherits, read from the source (as [`plan_fork`] decides).
    async fn fork_prefix(
        &self,
        source: &StreamName,
        meta: &Meta,
        spec: &ForkFrom,
    ) -> Result<Vec<Bytes>, StorageError> {
        let plan = plan_fork(source, meta.row.next_index, spec)?;
        let data_key = self.data_key(source.as_str(), &meta.generation);
        let mut records = self.range(&data_key, 0, plan.whole).await?;
        if let Some(wanted) = plan.bytes {
            let mut cut = ByteCut::new(wanted);
            for record in self
                .range(&data_key, plan.whole, meta.row.next_index)
                .await?
            {
                if !cut.wants_more() {
                    break;
                }
                cut.push(record);
            }
            records.extend(cut.finish()?);
        }
        Ok(records)
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
            .query_async(&mut *conn)
            .await
            .map_err(|e| storage_error("xrange", e))?;
        Ok(reply
            .ids
            .iter()
            .map(|entry| Bytes::from(entry.get::<Vec<u8>>("d").unwrap_or_default()))
            .collect())
    }
}

async fn subscribe_notifications(
    client: &redis::Client,
    channel: &str,
) -> Result<redis::aio::PubSub, StorageError> {
    let mut pubsub = client
        .get_async_pubsub()
        .await
        .map_err(|e| storage_error("pubsub", e))?;
    pubsub
        .subscribe(channel)
        .await
        .map_err(|e| storage_error("subscribe", e))?;
    Ok(pubsub)
}

/// Wakes the waiters of every notified stream; after a reconnect, all of them (notifications
/// sent meanwhile are lost). Stops when every clone of the storage is dropped.
async fn listen(
    client: redis::Client,
    channel: String,
    pubsub: redis::aio::PubSub,
    wakers: Arc<Wakers>,
    stop: CancellationToken,
) {
    let mut messages = pubsub.into_on_message();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            message = messages.next() => match message {
                Some(message) => {
                    if let Ok(name) = std::str::from_utf8(message.get_payload_bytes()) {
                        wakers.wake(name);
                    }
                }
                None => loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                    if let Ok(pubsub) = subscribe_notifications(&client, &channel).await {
                        messages = pubsub.into_on_message();
                        wakers.wake_all();
                        break;
                    }
                },
            },
        }
    }
}

#[async_trait]
impl StreamStorage for RedisStreamStorage {
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
                .query_async(&mut *conn)
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
                .query_async(&mut *conn)
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

    async fn append(
        &self,
        name: &StreamName,
        request: AppendRequest,
    ) -> Result<AppendOutcome, StorageError> {
        validate_append(&request, self.config.max_record_bytes)?;
        let _serialised = self.writes.lock(name.as_str()).await;
        let mut retry = CasRetry::new();
        loop {
            let meta = self.load_live(name).await?;
            let producers_key = self.producers_key(name.as_str(), &meta.generation);
            let mut conn = self.conn().await?;
            let producer = match &request.producer {
                None => None,
                Some(stamp) => {
                    let stored: Option<String> = redis::cmd("HGET")
                        .arg(&producers_key)
                        .arg(&stamp.id)
                        .query_async(&mut *conn)
                        .await
                        .map_err(|e| storage_error("hget", e))?;
                    stored.and_then(|v| {
                        let (epoch, seq) = v.split_once(' ')?;
                        Some(ProducerState {
                            epoch: epoch.parse().ok()?,
                            last_seq: seq.parse().ok()?,
                        })
                    })
                }
            };
            let ctx = AppendContext {
                stream: name,
                tail: meta.row.next_index,
                closed: meta.row.closed,
                closed_by: meta.row.closed_by.as_ref(),
                content_type: &meta.row.content_type,
                producer,
                writer_seq: meta.row.writer_seq.as_deref(),
            };
            let producer = match plan_append(&ctx, &request)? {
                AppendPlan::Reply(outcome) => return Ok(outcome),
                AppendPlan::Commit { producer } => producer,
            };
            let now = self.now();
            let mut fields: Vec<(&str, String)> = vec![
                (
                    "next_index",
                    (meta.row.next_index + request.records.len() as u64).to_string(),
                ),
                ("last_access_ms", now.to_string()),
            ];
            if let Some(seq) = &request.writer_seq {
                fields.push(("writer_seq", seq.clone()));
            }
            if request.close {
                fields.push(("closed", "1".into()));
                if let Some(p) = &request.producer {
                    fields.push(("closed_by", format!("{} {} {}", p.epoch, p.seq, p.id)));
                }
            }
            let keys = [
                self.meta_key(name.as_str()),
                self.data_key(name.as_str(), &meta.generation),
                producers_key.clone(),
                self.channel(),
            ];
            let mut invocation = eval(scripts::COMMIT, &keys);
            invocation
                .arg(&meta.ver)
                .arg(meta.row.next_index)
                .arg(request.records.len());
            for record in &request.records {
                invocation.arg(&record[..]);
            }
            invocation.arg(fields.len());
            for (key, value) in &fields {
                invocation.arg(*key).arg(value);
            }
            match (&request.producer, producer) {
                (Some(stamp), Some(state)) => invocation
                    .arg(&stamp.id)
                    .arg(format!("{} {}", state.epoch, state.last_seq)),
                _ => invocation.arg("").arg(""),
            };
            invocation.arg(name.as_str()).arg(meta.pexpire_ms(now));
            let committed: i64 = invocation
                .query_async(&mut *conn)
                .await
                .map_err(|e| storage_error("append", e))?;
            if committed == 1 {
                return Ok(committed_outcome(meta.row.next_index, &request, producer));
            }
            if !retry.again().await {
                return Err(contention(name));
            }
        }
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
            pipe.query_async::<()>(&mut *conn)
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
            max_record_bytes: Some(self.config.max_record_bytes),
        }
    }
}
