//! [`PgStreamStorage`]: the [`StreamStorage`] implementation over the tables of `tables.rs`.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use courier_traits::InvalidInput;
use courier_traits::storage::{
    AppendOutcome, AppendRequest, CreateOutcome, KeyedOutcome, KeyedRecord, Offset, ReadBatch,
    ReadLimits, StorageCapabilities, StorageError, StreamConfig, StreamInfo, StreamName,
    StreamStorage, WaitOutcome,
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
use super::schema;
use super::tables::{expired_names, load, load_for_append, load_live};
use crate::rules::{
    AppendContext, AppendPlan, check_record_sizes, committed_outcome, plan_append, validate_append,
    validate_keyed,
};
use crate::sql_forks::remove_chain;
use crate::sql_model::{StreamRow, collect_batch, now_ms, start_index, wait_on_row};
use crate::wakers::Wakers;

/// The notification channel every node listens on.
const CHANNEL: &str = "courier_streams";

/// Streams in Postgres. Clones share the pool and the listener.
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
    pool: PgPool,
    wakers: Arc<Wakers>,
    config: PgStorageConfig,
    last_sweep_ms: Arc<AtomicI64>,
    _listener: Arc<DropGuard>,
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
        tokio::spawn(listen(listener, CHANNEL, wakers.clone(), stop.clone()));
        Ok(PgStreamStorage {
            pool: storage_pool,
            wakers,
            config,
            last_sweep_ms: Arc::default(),
            _listener: Arc::new(stop.drop_guard()),
        })
    }

    /// The time expiry is decided against.
    fn now(&self) -> i64 {
        now_ms(&*self.config.clock)
    }

    /// Applies the schema (also done by `connect`; idempotent).
    pub async fn migrate(&self) -> Result<(), StorageError> {
        schema::migrate(&self.pool).await.map_err(db_error)
    }

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

    /// Removes `name` if it has expired.
    async fn reap(&self, name: &StreamName) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let touched = match load(&mut tx, name, true).await? {
            Some(row) if !row.soft_deleted && row.is_expired(self.now()) => {
                remove_chain(&mut *tx, name).await?
            }
            _ => Vec::new(),
        };
        PgStreamStorage::notify(&mut tx, &touched).await?;
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

#[async_trait]
impl StreamStorage for PgStreamStorage {
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

    async fn append(
        &self,
        name: &StreamName,
        request: AppendRequest,
    ) -> Result<AppendOutcome, StorageError> {
        validate_append(&request, self.config.max_record_bytes)?;
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let producer_id = request.producer.as_ref().map(|p| p.id.as_str());
        let (row, producer) = match load_for_append(&mut tx, name, producer_id).await? {
            Some((row, _)) if row.soft_deleted => {
                return Err(StorageError::Gone {
                    stream: name.clone(),
                });
            }
            Some((row, producer)) if !row.is_expired(self.now()) => (row, producer),
            _ => {
                drop(tx);
                self.reap(name).await?;
                return Err(StorageError::NotFound {
                    stream: name.clone(),
                });
            }
        };
        let ctx = AppendContext {
            stream: name,
            tail: row.next_index,
            closed: row.closed,
            closed_by: row.closed_by.as_ref(),
            content_type: &row.content_type,
            producer,
            writer_seq: row.writer_seq.as_deref(),
        };
        let producer = match plan_append(&ctx, &request)? {
            AppendPlan::Reply(outcome) => return Ok(outcome),
            AppendPlan::Commit { producer } => producer,
        };
        // Records, producer state, stream row and notification in one statement (one round
        // trip); data-modifying CTEs all run, referenced or not.
        let indexes: Vec<i64> = (0..request.records.len() as u64)
            .map(|i| (row.next_index + i) as i64)
            .collect();
        let payloads: Vec<&[u8]> = request.records.iter().map(|r| &r[..]).collect();
        let stamped = request.producer.as_ref().zip(producer);
        let closer = request.producer.as_ref().filter(|_| request.close);
        sqlx::query(
            "WITH records AS (
                 INSERT INTO courier_records (stream, idx, data) SELECT $1, * FROM unnest($2::BIGINT[], $3::BYTEA[])
             ), producer AS (
                 INSERT INTO courier_producers (stream, producer, epoch, last_seq)
                 SELECT $1, $4, $5, $6 WHERE $4::TEXT IS NOT NULL
                 ON CONFLICT (stream, producer) DO UPDATE SET epoch = excluded.epoch, last_seq = excluded.last_seq
             ), stream AS (
                 UPDATE courier_streams SET next_index = $7, last_access_ms = $8,
                     writer_seq = COALESCE($9, writer_seq),
                     closed = CASE WHEN $10 THEN 1 ELSE closed END,
                     closed_by_id = COALESCE($11, closed_by_id),
                     closed_by_epoch = COALESCE($12, closed_by_epoch),
                     closed_by_seq = COALESCE($13, closed_by_seq)
                 WHERE name = $1
             )
             SELECT pg_notify($14, $1)",
        )
        .bind(name.as_str())
        .bind(&indexes)
        .bind(&payloads)
        .bind(stamped.map(|(stamp, _)| stamp.id.as_str()))
        .bind(stamped.map(|(_, state)| state.epoch as i64))
        .bind(stamped.map(|(_, state)| state.last_seq as i64))
        .bind((row.next_index + request.records.len() as u64) as i64)
        .bind(self.now())
        .bind(request.writer_seq.as_deref())
        .bind(request.close)
        .bind(closer.map(|p| p.id.as_str()))
        .bind(closer.map(|p| p.epoch as i64))
        .bind(closer.map(|p| p.seq as i64))
        .bind(CHANNEL)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(committed_outcome(row.next_index, &request, producer))
    }

    async fn append_keyed(
        &self,
        stream: &StreamName,
        records: Vec<KeyedRecord>,
        window: Duration,
    ) -> Result<Vec<KeyedOutcome>, StorageError> {
        validate_keyed(&records, self.config.max_record_bytes)?;
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let row = match load(&mut tx, stream, true).await? {
            Some(row) if row.soft_deleted => {
                return Err(StorageError::Gone {
                    stream: stream.clone(),
                });
            }
            Some(row) if !row.is_expired(self.now()) => row,
            _ => {
                drop(tx);
                self.reap(stream).await?;
                return Err(StorageError::NotFound {
                    stream: stream.clone(),
                });
            }
        };
        let outcomes =
            keyed::append_keyed(&mut tx, stream, &row, records, window, self.now(), CHANNEL)
                .await?;
        tx.commit().await.map_err(db_error)?;
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
        PgStreamStorage::notify(&mut tx, &touched).await?;
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
