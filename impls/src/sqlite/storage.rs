//! [`SqliteStreamStorage`]: the [`StreamStorage`] implementation: reads on the pool, every
//! write through the group-commit writer (`writer.rs`).

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use courier_traits::storage::{
    AppendOutcome, AppendRequest, CreateOutcome, KeyedOutcome, KeyedRecord, Offset, ReadBatch,
    ReadLimits, StorageCapabilities, StorageError, StreamConfig, StreamInfo, StreamName,
    StreamStorage, WaitOutcome,
};
use futures::TryStreamExt;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Row, SqlitePool};

use super::change_watch::ChangeWatch;
use super::config::SqliteStorageConfig;
use super::errors::db_error;
use super::keyed;
use super::row::{StreamRow, encode_expiry, expired_names, load, load_live, now_ms, requested_key};
use super::schema;
use super::writer::{Work, Writer};
use crate::rules::{
    check_record_sizes, fork_settings, index_offset, own_settings, reject_self_fork,
    validate_append, validate_keyed,
};
use crate::sql_forks::{InsertRecords, copy_fork_prefix, remove_chain};
use crate::sql_model::{collect_batch, existing_stream_outcome, start_index, wait_on_row};
use crate::wakers::Wakers;

/// Streams in one SQLite file. Clones share the pool.
///
/// ```no_run
/// # async fn demo() -> Result<(), courier_traits::StorageError> {
/// use courier_impls::sqlite::{SqliteStorageConfig, SqliteStreamStorage};
/// use courier_traits::storage::*;
///
/// let store =
///     SqliteStreamStorage::connect("./data/streams.db", SqliteStorageConfig::default()).await?;
/// let name = StreamName::new("audit")?;
/// store.create(&name, StreamConfig::with_content_type("text/plain"), vec![]).await?;
/// store.append(&name, AppendRequest::record("survives restarts")).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteStreamStorage {
    pool: SqlitePool,
    wakers: Arc<Wakers>,
    config: SqliteStorageConfig,
    last_sweep_ms: Arc<std::sync::atomic::AtomicI64>,
    writer: Writer,
    change_watch: Arc<ChangeWatch>,
}

impl SqliteStreamStorage {
    /// Opens the database file at `path` (creating it and its directory if missing) with these
    /// settings, and brings its schema up to date.
    pub async fn connect(
        path: impl AsRef<Path>,
        config: SqliteStorageConfig,
    ) -> Result<SqliteStreamStorage, StorageError> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StorageError::unavailable(format!("cannot create directory {}", dir.display()), e)
            })?;
        }
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(db_error)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if config.fsync_every_commit {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .busy_timeout(config.busy_timeout)
            .foreign_keys(false)
            // sqlx hands rows over from its worker thread through a bounded channel; a larger
            // one lets a read of many records run without a thread switch every 50 rows.
            .row_buffer_size(1024);
        let pool = SqlitePoolOptions::new()
            .max_connections(config.max_connections.max(1))
            // An embedded file cannot drop a connection: skip the ping before every checkout.
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(db_error)?;
        schema::migrate(&pool).await.map_err(db_error)?;
        // All writes go through one connection that commits them in batches (group commit).
        let writer = Writer::start(
            options.connect().await.map_err(db_error)?,
            config.clock.clone(),
        );
        let wakers = Arc::<Wakers>::default();
        let change_watch = ChangeWatch::start(
            options.connect().await.map_err(db_error)?,
            wakers.clone(),
            config.change_poll_interval,
        );
        Ok(SqliteStreamStorage {
            pool,
            wakers,
            config,
            last_sweep_ms: Arc::default(),
            writer,
            change_watch: Arc::new(change_watch),
        })
    }

    /// Closes the pool and stops watching for other processes' commits; later calls fail
    /// with a retryable error.
    pub async fn close(&self) {
        self.change_watch.stop();
        self.pool.close().await;
    }

    /// Runs `work` in the writer's next batch transaction (group commit); returns once that
    /// batch is committed.
    async fn write<T: Send + 'static>(&self, work: impl Work<T>) -> Result<T, StorageError> {
        self.writer.write(work).await
    }

    /// The time expiry is decided against.
    fn now(&self) -> i64 {
        now_ms(&*self.config.clock)
    }

    /// The live row of `name`, read without a write lock. An expired stream is reaped first.
    async fn read_live(&self, name: &StreamName) -> Result<StreamRow, StorageError> {
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
        match load(&mut conn, name).await? {
            Some(row) if !row.soft_deleted && row.is_expired(self.now()) => {
                drop(conn);
                self.reap(name).await?;
                Err(StorageError::NotFound {
                    stream: name.clone(),
                })
            }
            Some(row) if row.soft_deleted => Err(StorageError::Gone {
                stream: name.clone(),
            }),
            Some(row) => Ok(row),
            None => Err(StorageError::NotFound {
                stream: name.clone(),
            }),
        }
    }

    /// Removes `name` if it has expired (soft-deleting it if forks still read through it).
    async fn reap(&self, name: &StreamName) -> Result<(), StorageError> {
        let owned = name.clone();
        let clock = self.config.clock.clone();
        let touched = self
            .write(move |conn| {
                Box::pin(async move {
                    match load(conn, &owned).await? {
                        Some(row) if !row.soft_deleted && row.is_expired(now_ms(&*clock)) => {
                            remove_chain(conn, &owned).await
                        }
                        _ => Ok(Vec::new()),
                    }
                })
            })
            .await?;
        for stream in &touched {
            self.wakers.wake(stream.as_str());
        }
        Ok(())
    }

    /// Reaps up to 100 expired streams nobody touched again, at most once per second.
    async fn sweep(&self) -> Result<(), StorageError> {
        let now = self.now();
        let last = self
            .last_sweep_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        if now - last < 1000 {
            return Ok(());
        }
        self.last_sweep_ms
            .store(now, std::sync::atomic::Ordering::Relaxed);
        let names = {
            let mut conn = self.pool.acquire().await.map_err(db_error)?;
            expired_names(&mut conn, 100, now).await?
        };
        for name in names {
            self.reap(&name).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl StreamStorage for SqliteStreamStorage {
    async fn create(
        &self,
        name: &StreamName,
        config: StreamConfig,
        initial: Vec<Bytes>,
    ) -> Result<CreateOutcome, StorageError> {
        check_record_sizes(&initial, self.config.max_record_bytes)?;
        self.sweep().await?;
        self.reap(name).await?;
        let owned = name.clone();
        let clock = self.config.clock.clone();
        self.write(move |conn| Box::pin(async move {
            let name = &owned;
            let now = now_ms(&*clock);
            if let Some(outcome) = existing_stream_outcome(load_live(conn, name, now).await, name, &config) {
                return outcome;
            }
            let (content_type, expiry, parent, inherited) = match &config.fork {
                None => {
                    let (content_type, expiry) = own_settings(&config);
                    (content_type, expiry, None, 0)
                }
                Some(fork) => {
                    reject_self_fork(name, fork)?;
                    let source = load_live(conn, &fork.source, now).await.map_err(|e| e.for_fork_source(&fork.source))?;
                    let (content_type, expiry) = fork_settings(name, &config, source.as_fork_source())?;
                    let inherited = copy_fork_prefix(conn, &fork.source, source.next_index, name, fork).await?;
                    sqlx::query("UPDATE courier_streams SET live_forks = live_forks + 1 WHERE name = ?")
                        .bind(fork.source.as_str())
                        .execute(&mut *conn)
                        .await
                        .map_err(db_error)?;
                    (content_type, expiry, Some(fork.source.to_string()), inherited)
                }
            };
            conn.insert_records(name, inherited, &initial).await?;
            let (expiry_kind, expiry_ms) = encode_expiry(expiry);
            let next_index = inherited + initial.len() as u64;
            sqlx::query(
                "INSERT INTO courier_streams (name, content_type, expiry_kind, expiry_ms, requested, closed,
                     next_index, last_access_ms, parent)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(name.as_str())
            .bind(&content_type)
            .bind(expiry_kind)
            .bind(expiry_ms)
            .bind(requested_key(&config))
            .bind(config.closed as i64)
            .bind(next_index as i64)
            .bind(now)
            .bind(parent)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
            Ok(CreateOutcome::Created(StreamInfo {
                name: name.clone(),
                content_type,
                expiry,
                next_offset: index_offset::encode(next_index),
                closed: config.closed,
            }))
        }))
        .await
    }

    async fn append(
        &self,
        name: &StreamName,
        request: AppendRequest,
    ) -> Result<AppendOutcome, StorageError> {
        validate_append(&request, self.config.max_record_bytes)?;
        let outcome = self.writer.append(name.clone(), request).await;
        if let Err(StorageError::NotFound { .. }) = &outcome {
            self.reap(name).await?;
        }
        let outcome = outcome?;
        if !outcome.duplicate {
            self.wakers.wake(name.as_str());
        }
        Ok(outcome)
    }

    async fn append_keyed(
        &self,
        stream: &StreamName,
        records: Vec<KeyedRecord>,
        window: Duration,
    ) -> Result<Vec<KeyedOutcome>, StorageError> {
        validate_keyed(&records, self.config.max_record_bytes)?;
        let owned = stream.clone();
        let clock = self.config.clock.clone();
        let outcome = self
            .write(move |conn| {
                Box::pin(async move {
                    keyed::append_keyed(conn, &owned, records, window, now_ms(&*clock)).await
                })
            })
            .await;
        if let Err(StorageError::NotFound { .. }) = &outcome {
            self.reap(stream).await?;
        }
        let outcomes = outcome?;
        if outcomes
            .iter()
            .any(|o| matches!(o, KeyedOutcome::Appended { .. }))
        {
            self.wakers.wake(stream.as_str());
        }
        Ok(outcomes)
    }

    async fn read(
        &self,
        name: &StreamName,
        from: Option<Offset>,
        limits: ReadLimits,
    ) -> Result<ReadBatch, StorageError> {
        let row = self.read_live(name).await?;
        let start = start_index(name, &row, from.as_ref())?;
        let now = self.now();
        if row.needs_touch(now) {
            let owned = name.clone();
            self.write(move |conn| {
                Box::pin(async move {
                    sqlx::query("UPDATE courier_streams SET last_access_ms = ? WHERE name = ?")
                        .bind(now)
                        .bind(owned.as_str())
                        .execute(&mut *conn)
                        .await
                        .map_err(db_error)
                })
            })
            .await?;
        }
        // Bounded by the tail read above, so a concurrent append cannot tear the batch.
        let payloads = sqlx::query("SELECT data FROM courier_records WHERE stream = ? AND idx >= ? AND idx < ? ORDER BY idx")
            .bind(name.as_str())
            .bind(start as i64)
            .bind(row.next_index as i64)
            .fetch(&self.pool)
            .map_err(db_error)
            .and_then(|r| async move { r.try_get::<Vec<u8>, _>("data").map_err(db_error) });
        collect_batch(row, start, limits, payloads).await
    }

    async fn wait(
        &self,
        name: &StreamName,
        after: &Offset,
        timeout: Duration,
    ) -> Result<WaitOutcome, StorageError> {
        wait_on_row(&self.wakers, name, after, timeout, || self.read_live(name)).await
    }

    async fn head(&self, name: &StreamName) -> Result<StreamInfo, StorageError> {
        Ok(self.read_live(name).await?.info(name))
    }

    async fn delete(&self, name: &StreamName) -> Result<(), StorageError> {
        let owned = name.clone();
        let clock = self.config.clock.clone();
        let touched = self
            .write(move |conn| {
                Box::pin(async move {
                    load_live(conn, &owned, now_ms(&*clock)).await?;
                    remove_chain(conn, &owned).await
                })
            })
            .await?;
        for stream in &touched {
            self.wakers.wake(stream.as_str());
        }
        Ok(())
    }

    fn capabilities(&self) -> StorageCapabilities {
        StorageCapabilities {
            durable: true,
            shared: true,
            ttl: true,
            producers: true,
            forks: true,
            keyed_append: true,
            max_record_bytes: Some(self.config.max_record_bytes),
            ..StorageCapabilities::NONE
        }
    }
}
