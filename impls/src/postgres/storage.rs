//! [`PgStreamStorage`]: the [`StreamStorage`] implementation over the tables of `tables.rs`.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use courier_traits::InvalidInput;
use courier_traits::storage::{
    CreateOutcome, KeyedOutcome, KeyedRecord, Offset, ReadBatch, ReadLimits, StorageCapabilities,
    StorageError, StreamConfig, StreamInfo, StreamName, WaitOutcome,
};
use futures::TryStreamExt;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Row};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::config::PgStorageConfig;
use super::create::create_in;
use super::errors::db_error;
use super::keyed;
use super::listener::listen;
use super::notifier::Notifier;
use super::schema;
use super::shared_commit::decide_and_write;
use super::tables::{expired_names, load, load_live, load_producers};
use crate::append_queue::{
    AppendQueue, CommitBatch, PendingAppend, StreamBatch, copy_error,
    stream_storage_with_append_queue,
};
use crate::rules::{AppendBatch, check_record_sizes, producer_ids, validate_keyed};
use crate::sql_forks::remove_chain;
use crate::sql_model::{StreamRow, collect_batch, now_ms, start_index, wait_on_row};
use crate::wakers::Wakers;

/// The notification channel every node listens on.
const CHANNEL: &str = "courier_streams";
/// Shared commits (appends to several streams in one transaction) in flight at once, of the
/// pool's connections (see `shared_commit.rs`). Across 1000 streams at c=32, 2 took less of
/// the node's CPU per append than 4 or 8 (benches/README.md) and reached the most appends/s.
const SHARED_COMMITS: usize = 2;

/// Streams in Postgres. Clones share the pool, the append queue and the listener.
///
/// ```no_run
/// # async fn demo() -> Result<(), courier_traits::StorageError> {
/// use courier_impls::postgres::{PgStorageConfig, PgStreamStorage};
/// use courier_traits::storage::*;
///
/// let store = PgStreamStorage::connect("postgres://postgres@127.0.0.1/postgres", PgStorageConfig::default()).await?;
/// let name = StreamName::new("orders")?;
/// store.create(&name, StreamConfig::with_content_type("application/json"), vec![]).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PgStreamStorage {
    store: Arc<PgStore>,
    /// Appends, committed in batches per stream (see `append_queue.rs`).
    appends: AppendQueue,
}

/// What every operation works on; the append queue's task holds it too.
struct PgStore {
    pool: PgPool,
    wakers: Arc<Wakers>,
    /// Sends the appends' notifications after their commit (see `notifier.rs`).
    notifier: Arc<Notifier>,
    config: PgStorageConfig,
    last_sweep_ms: AtomicI64,
    _listener: DropGuard,
}

impl PgStreamStorage {
    /// Connects to `url`, applies the schema, and starts the notification listener.
    pub async fn connect(
        url: &str,
        config: PgStorageConfig,
    ) -> Result<PgStreamStorage, StorageError> {
        let mut options = PgConnectOptions::from_str(url).map_err(db_error)?;
        if let Some(schema) = &config.schema {
            if schema.is_empty()
                || !schema
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(InvalidInput::new(
                    "postgres schema",
                    schema,
                    "use letters, digits and '_'",
                )
                .into());
            }
            let admin = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(options.clone())
                .await
                .map_err(db_error)?;
            let create = format!("CREATE SCHEMA IF NOT EXISTS {schema}");
            sqlx::query(sqlx::AssertSqlSafe(create))
                .execute(&admin)
                .await
                .map_err(db_error)?;
            admin.close().await;
            options = options.options([("search_path", schema.as_str())]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(db_error)?;
        let storage_pool = pool.clone();
        schema::migrate(&pool).await.map_err(db_error)?;
        let wakers = Arc::new(Wakers::default());
        let stop = CancellationToken::new();
        let listener = PgListener::connect_with(&pool).await.map_err(db_error)?;
        let notifier = Notifier::start(&storage_pool, CHANNEL, stop.clone());
        tokio::spawn(listen(
            listener,
            CHANNEL,
            wakers.clone(),
            notifier.own_process(),
            stop.clone(),
        ));
        let store = Arc::new(PgStore {
            pool: storage_pool,
            wakers,
            notifier,
            config,
            last_sweep_ms: AtomicI64::default(),
            _listener: stop.drop_guard(),
        });
        Ok(PgStreamStorage {
            appends: AppendQueue::start(store.clone()),
            store,
        })
    }

    /// Applies the schema (also done by `connect`; idempotent).
    pub async fn migrate(&self) -> Result<(), StorageError> {
        schema::migrate(&self.store.pool).await.map_err(db_error)
    }
}

impl PgStore {
    /// The time expiry is decided against.
    fn now(&self) -> i64 {
        now_ms(&*self.config.clock)
    }

    /// After an append to `name` committed: wakes this node's waiters now, and queues the
    /// notification of every node's.
    fn appended(&self, name: &StreamName) {
        self.wakers.wake(name.as_str());
        self.notifier.queue(name.as_str());
    }

    /// Notifies `names` inside the caller's transaction (creates, deletes, expiry: rare, so
    /// the commit order they impose costs little; appends go through [`Notifier`]).
    async fn notify(conn: &mut PgConnection, names: &[StreamName]) -> Result<(), StorageError> {
        for name in names {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(name.as_str())
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
        }
        Ok(())
    }

    /// The live row of `name` (no lock). An expired stream is reaped first.
    async fn read_live(&self, name: &StreamName) -> Result<StreamRow, StorageError> {
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
        match load(&mut conn, name, false).await? {
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

    /// A transaction holding the lock on `name`'s row, and the row; an expired stream is
    /// reaped first (NotFound), a soft-deleted one is Gone.
    async fn begin_write(
        &self,
        name: &StreamName,
    ) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, StreamRow), StorageError> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        match load(&mut tx, name, true).await? {
            Some(row) if row.soft_deleted => Err(StorageError::Gone {
                stream: name.clone(),
            }),
            Some(row) if !row.is_expired(self.now()) => Ok((tx, row)),
            _ => {
                drop(tx);
                self.reap(name).await?;
                Err(StorageError::NotFound {
                    stream: name.clone(),
                })
            }
        }
    }

    /// Removes `name` if it has expired.
    async fn reap(&self, name: &StreamName) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let touched = match load(&mut tx, name, true).await? {
            Some(row) if !row.soft_deleted && row.is_expired(self.now()) => {
                remove_chain(&mut *tx, name).await?
            }
            _ => Vec::new(),
        };
        PgStore::notify(&mut tx, &touched).await?;
        tx.commit().await.map_err(db_error)
    }

    /// Reaps up to 100 expired streams nobody touched again, at most once per second.
    async fn sweep(&self) -> Result<(), StorageError> {
        let now = self.now();
        if now - self.last_sweep_ms.load(Ordering::Relaxed) < 1000 {
            return Ok(());
        }
        self.last_sweep_ms.store(now, Ordering::Relaxed);
        let names =
            expired_names(&mut *self.pool.acquire().await.map_err(db_error)?, 100, now).await?;
        for name in names {
            self.reap(&name).await?;
        }
        Ok(())
    }
}

impl PgStore {
    async fn create(
        &self,
        name: &StreamName,
        config: StreamConfig,
        initial: Vec<Bytes>,
    ) -> Result<CreateOutcome, StorageError> {
        check_record_sizes(&initial, self.config.max_record_bytes)?;
        self.sweep().await?;
        for _ in 0..3 {
            let mut tx = self.pool.begin().await.map_err(db_error)?;
            if let Some(outcome) = create_in(&mut tx, name, &config, &initial, self.now()).await? {
                tx.commit().await.map_err(db_error)?;
                return Ok(outcome);
            }
        }
        Err(StorageError::Unavailable {
            message: format!("stream {name} is being created and deleted concurrently"),
            source: None,
        })
    }

    async fn append_keyed(
        &self,
        stream: &StreamName,
        records: Vec<KeyedRecord>,
        window: Duration,
    ) -> Result<Vec<KeyedOutcome>, StorageError> {
        validate_keyed(&records, self.config.max_record_bytes)?;
        let (mut tx, row) = self.begin_write(stream).await?;
        let (outcomes, wrote) =
            keyed::append_keyed(&mut tx, stream, &row, records, window, self.now()).await?;
        tx.commit().await.map_err(db_error)?;
        if wrote {
            self.appended(stream);
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
            sqlx::query("UPDATE courier_streams SET last_access_ms = $1 WHERE name = $2")
                .bind(now)
                .bind(name.as_str())
                .execute(&self.pool)
                .await
                .map_err(db_error)?;
        }
        // Bounded by the tail read above, so a concurrent append cannot tear the batch.
        let payloads = sqlx::query("SELECT data FROM courier_records WHERE stream = $1 AND idx >= $2 AND idx < $3 ORDER BY idx")
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
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        load_live(&mut tx, name, true, self.now()).await?;
        let touched = remove_chain(&mut *tx, name).await?;
        PgStore::notify(&mut tx, &touched).await?;
        tx.commit().await.map_err(db_error)
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
impl CommitBatch for PgStore {
    async fn commit(
        &self,
        name: &StreamName,
        batch: &mut [PendingAppend],
    ) -> Result<(), StorageError> {
        let ids: Vec<String> = producer_ids(batch.iter().map(|a| &a.request))
            .into_iter()
            .map(str::to_owned)
            .collect();
        let (mut tx, row) = self.begin_write(name).await?;
        let stored = load_producers(&mut tx, name, &ids).await?;
        let mut decided = AppendBatch::new(name, row, stored);
        for append in batch.iter_mut() {
            append.result = Some(decided.decide(&append.request));
        }
        if !decided.changed() {
            return Ok(());
        }
        // Records, producer states and stream row in one statement (one round trip);
        // data-modifying CTEs all run, referenced or not. The notification follows the
        // commit, outside this transaction (see `notifier.rs`).
        let first = decided.first_index();
        let indexes: Vec<i64> = (0..decided.records().len() as u64)
            .map(|i| (first + i) as i64)
            .collect();
        let payloads: Vec<&[u8]> = decided.records().iter().map(|r| &r[..]).collect();
        let (mut producers, mut epochs, mut seqs) = (Vec::new(), Vec::new(), Vec::new());
        for (id, state) in decided.changed_producers() {
            producers.push(id);
            epochs.push(state.epoch as i64);
            seqs.push(state.last_seq as i64);
        }
        let row = decided.row();
        let closer = row.closed_by.as_ref();
        sqlx::query(
            "WITH records AS (
                 INSERT INTO courier_records (stream, idx, data) SELECT $1, * FROM unnest($2::BIGINT[], $3::BYTEA[])
             ), producer AS (
                 INSERT INTO courier_producers (stream, producer, epoch, last_seq)
                 SELECT $1, * FROM unnest($4::TEXT[], $5::BIGINT[], $6::BIGINT[])
                 ON CONFLICT (stream, producer) DO UPDATE SET epoch = excluded.epoch, last_seq = excluded.last_seq
             )
             UPDATE courier_streams SET next_index = $7, last_access_ms = $8, writer_seq = $9,
                 closed = $10, closed_by_id = $11, closed_by_epoch = $12, closed_by_seq = $13
             WHERE name = $1",
        )
        .bind(name.as_str())
        .bind(&indexes)
        .bind(&payloads)
        .bind(&producers)
        .bind(&epochs)
        .bind(&seqs)
        .bind(row.next_index as i64)
        .bind(self.now())
        .bind(row.writer_seq.as_deref())
        .bind(i64::from(row.closed))
        .bind(closer.map(|p| p.id.as_str()))
        .bind(closer.map(|p| p.epoch as i64))
        .bind(closer.map(|p| p.seq as i64))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        self.appended(name);
        Ok(())
    }

    fn shared_commits(&self) -> Option<usize> {
        Some(SHARED_COMMITS)
    }

    async fn commit_streams(&self, batches: &mut [StreamBatch]) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let decided = decide_and_write(&mut tx, batches, || self.now()).await?;
        tx.commit().await.map_err(db_error)?;
        for &i in &decided.written {
            self.appended(&batches[i].name);
        }
        // The streams the shared transaction left (row busy elsewhere, missing, expired), each
        // on its own transaction, at once.
        let left = batches
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| decided.left.contains(i))
            .map(|(_, batch)| async move {
                if let Err(error) = self.commit(&batch.name, &mut batch.appends).await {
                    for append in &mut batch.appends {
                        append.result = Some(Err(copy_error(&error)));
                    }
                }
            });
        futures::future::join_all(left).await;
        Ok(())
    }
}

stream_storage_with_append_queue!(PgStreamStorage);
