//! [`SqliteStreamStorage`]: the [`StreamStorage`] implementation: reads from the recent-records
//! cache when it holds them (`recent.rs`), else on the read connections (`readers.rs`); every
//! write through the group-commit writer (`writer.rs`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use courier_traits::storage::{
    AppendOutcome, AppendRequest, CreateOutcome, JoinedBatch, JoiningFor, KeyedOutcome,
    KeyedRecord, Offset, ReadBatch, ReadFrom, ReadLimits, StorageCapabilities, StorageError,
    StreamConfig, StreamInfo, StreamName, StreamStorage, WaitOutcome,
};
use rusqlite::Connection;

use super::change_watch::ChangeWatch;
use super::config::SqliteStorageConfig;
use super::connection::open;
use super::errors::db_error;
use super::forks::{ForkDb, run_now};
use super::found::{Found, read_records};
use super::keyed;
use super::readers::Readers;
use super::recent::{Change, Recent};
use super::row::{StreamRow, encode_expiry, expired_names, load, load_live, now_ms, requested_key};
use super::schema;
use super::writer::{Work, Writer};
use crate::rules::{
    check_record_sizes, fork_settings, index_offset, own_settings, reject_self_fork,
    validate_append, validate_keyed,
};
use crate::sql_forks::{InsertRecords, copy_fork_prefix, remove_chain};
use crate::sql_model::{collect_batch, existing_stream_outcome, wait_on_row};
use crate::wakers::Wakers;

/// Streams in one SQLite file. Clones share the connections and the writer thread.
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
    readers: Arc<Readers>,
    wakers: Arc<Wakers>,
    config: SqliteStorageConfig,
    last_sweep_ms: Arc<AtomicI64>,
    writer: Writer,
    change_watch: Arc<ChangeWatch>,
    recent: Arc<Recent>,
}

/// The connections a storage opens: the writer's, the checkpoint thread's, the readers', the
/// change watch's, and the one the recent-records cache checks freshness on.
struct Connections {
    writer: Connection,
    checkpoints: Connection,
    readers: Vec<Connection>,
    watch: Connection,
    version: Connection,
}

impl Connections {
    fn open(path: &Path, config: &SqliteStorageConfig) -> rusqlite::Result<Connections> {
        let mut writer = open(path, config)?;
        schema::migrate(&mut writer)?;
        let readers = (0..config.max_connections.max(1))
            .map(|_| open(path, config))
            .collect::<rusqlite::Result<_>>()?;
        let version = open(path, config)?;
        // Asked inline on the async runtime: never wait for a lock, read SQLite instead.
        version.busy_timeout(Duration::ZERO)?;
        Ok(Connections {
            writer,
            checkpoints: open(path, config)?,
            readers,
            watch: open(path, config)?,
            version,
        })
    }
}

impl SqliteStreamStorage {
    /// Opens the database file at `path` (creating it and its directory if missing) with these
    /// settings, and brings its schema up to date.
    pub async fn connect(
        path: impl AsRef<Path>,
        config: SqliteStorageConfig,
    ) -> Result<SqliteStreamStorage, StorageError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StorageError::unavailable(format!("cannot create directory {}", dir.display()), e)
            })?;
        }
        // Opening may wait on the file lock (another process migrating): off the runtime.
        let opening = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || Connections::open(&path, &config))
        };
        let connections = opening
            .await
            .map_err(|e| StorageError::unavailable("sqlite: opening the database failed", e))?
            .map_err(db_error)?;
        let recent = Arc::new(Recent::new(connections.version, config.recent_bytes));
        let writer = Writer::start(
            connections.writer,
            connections.checkpoints,
            config.clock.clone(),
            recent.clone(),
            !config.fsync_every_commit,
            config.busy_timeout,
        )
        .map_err(|e| StorageError::unavailable("sqlite: cannot start the writer thread", e))?;
        let wakers = Arc::<Wakers>::default();
        let change_watch = ChangeWatch::start(
            connections.watch,
            wakers.clone(),
            config.change_poll_interval,
        );
        Ok(SqliteStreamStorage {
            readers: Readers::new(connections.readers),
            wakers,
            config,
            last_sweep_ms: Arc::default(),
            writer,
            change_watch: Arc::new(change_watch),
            recent,
        })
    }

    /// What the recent-records cache reads to know whether anyone committed, now.
    #[cfg(test)]
    pub(super) fn cache_freshness(&self) -> Option<super::recent::Version> {
        self.recent.version_now()
    }

    /// Waits up to `timeout` until the checkpoint thread has finished `at_least` passes;
    /// returns how many it has.
    #[cfg(test)]
    pub(super) fn wait_for_checkpoint_passes(&self, at_least: u64, timeout: Duration) -> u64 {
        self.writer.wait_for_checkpoint_passes(at_least, timeout)
    }

    /// Commits what is queued, closes the connections and stops watching for other processes'
    /// commits; later calls fail with a retryable error.
    pub async fn close(&self) {
        self.change_watch.stop();
        self.writer.stop().await;
        self.recent.close();
        self.readers.close();
    }

    /// Runs `work` in the writer's next batch transaction (group commit); returns once that
    /// batch is committed. `touches` says which cached streams `work` may change.
    async fn write<T: Send + 'static>(
        &self,
        touches: Change,
        work: impl Work<T>,
    ) -> Result<T, StorageError> {
        self.writer.write(touches, work).await
    }

    /// The time expiry is decided against.
    fn now(&self) -> i64 {
        now_ms(&*self.config.clock)
    }

    /// Judges `row`, as read for `name`: live, gone (soft-deleted) or missing. An expired
    /// stream is reaped first.
    async fn judge(
        &self,
        name: &StreamName,
        row: Option<StreamRow>,
    ) -> Result<StreamRow, StorageError> {
        match row {
            Some(row) if !row.soft_deleted && row.is_expired(self.now()) => {
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

    /// The live row of `name`, read without a write lock. An expired stream is reaped first.
    async fn read_live(&self, name: &StreamName) -> Result<StreamRow, StorageError> {
        if let Some(row) = self.recent.row(name) {
            return self.judge(name, Some(row)).await;
        }
        let owned = name.clone();
        let row = self.readers.run(move |conn| load(conn, &owned)).await?;
        self.judge(name, row).await
    }

    /// Removes `name` if it has expired (soft-deleting it if forks still read through it).
    async fn reap(&self, name: &StreamName) -> Result<(), StorageError> {
        let owned = name.clone();
        let clock = self.config.clock.clone();
        let touched = self
            .write(Change::ForgetAll, move |conn| match load(conn, &owned)? {
                Some(row) if !row.soft_deleted && row.is_expired(now_ms(&*clock)) => {
                    run_now(remove_chain(&mut ForkDb(conn), &owned))
                }
                _ => Ok(Vec::new()),
            })
            .await?;
        for stream in &touched {
            self.wakers.wake(stream.as_str());
        }
        Ok(())
    }

    /// What a read from `from` within `limits` finds in `name` on SQLite, on a read
    /// connection (the cache could not answer).
    async fn read_stored(
        &self,
        name: &StreamName,
        from: ReadFrom,
        limits: ReadLimits,
        now: i64,
    ) -> Result<Found, StorageError> {
        let owned = name.clone();
        self.readers
            .run(move |conn| read_records(conn, &owned, &from, limits, now))
            .await
    }

    /// Judges `row`, as a read at `now` found it, and counts that read: it resets an idle
    /// TTL. An expired stream is reaped first.
    async fn live_after_read(
        &self,
        name: &StreamName,
        row: Option<StreamRow>,
        now: i64,
    ) -> Result<StreamRow, StorageError> {
        let row = self.judge(name, row).await?;
        if row.needs_touch(now) {
            let owned = name.clone();
            self.write(Change::Forget(name.clone()), move |conn| {
                conn.prepare_cached(
                    "UPDATE courier_streams SET last_access_ms = ?1 WHERE name = ?2",
                )
                .and_then(|mut update| update.execute((now, owned.as_str())))
                .map_err(db_error)
            })
            .await?;
        }
        Ok(row)
    }

    /// Reaps up to 100 expired streams nobody touched again, at most once per second.
    async fn sweep(&self) -> Result<(), StorageError> {
        let now = self.now();
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if now - last < 1000 {
            return Ok(());
        }
        self.last_sweep_ms.store(now, Ordering::Relaxed);
        let names = self
            .readers
            .run(move |conn| expired_names(conn, 100, now))
            .await?;
        for name in names {
            self.reap(&name).await?;
        }
        Ok(())
    }
}

/// Creates `name` inside the writer's transaction (see [`StreamStorage::create`]).
fn create_stream(
    conn: &Connection,
    name: &StreamName,
    config: &StreamConfig,
    initial: &[Bytes],
    now: i64,
) -> Result<CreateOutcome, StorageError> {
    if let Some(outcome) = existing_stream_outcome(load_live(conn, name, now), name, config) {
        return outcome;
    }
    let (content_type, expiry, parent, inherited) = match &config.fork {
        None => {
            let (content_type, expiry) = own_settings(config);
            (content_type, expiry, None, 0)
        }
        Some(fork) => {
            reject_self_fork(name, fork)?;
            let source =
                load_live(conn, &fork.source, now).map_err(|e| e.for_fork_source(&fork.source))?;
            let (content_type, expiry) = fork_settings(name, config, source.as_fork_source())?;
            let inherited = run_now(copy_fork_prefix(
                &mut ForkDb(conn),
                &fork.source,
                source.next_index,
                name,
                fork,
            ))?;
            conn.prepare_cached(
                "UPDATE courier_streams SET live_forks = live_forks + 1 WHERE name = ?1",
            )
            .and_then(|mut update| update.execute([fork.source.as_str()]))
            .map_err(db_error)?;
            (
                content_type,
                expiry,
                Some(fork.source.to_string()),
                inherited,
            )
        }
    };
    run_now(ForkDb(conn).insert_records(name, inherited, initial))?;
    let (expiry_kind, expiry_ms) = encode_expiry(expiry);
    let next_index = inherited + initial.len() as u64;
    conn.prepare_cached(
        "INSERT INTO courier_streams (name, content_type, expiry_kind, expiry_ms, requested, closed,
             next_index, last_access_ms, parent)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut insert| {
        insert.execute((
            name.as_str(),
            &content_type,
            expiry_kind,
            expiry_ms,
            requested_key(config),
            config.closed,
            next_index as i64,
            now,
            parent,
        ))
    })
    .map_err(db_error)?;
    Ok(CreateOutcome::Created(StreamInfo {
        name: name.clone(),
        content_type,
        expiry,
        next_offset: index_offset::encode(next_index),
        closed: config.closed,
    }))
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
        self.write(Change::ForgetAll, move |conn| {
            create_stream(conn, &owned, &config, &initial, now_ms(&*clock))
        })
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
            .write(Change::Forget(stream.clone()), move |conn| {
                keyed::append_keyed(conn, &owned, records, window, now_ms(&*clock))
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
        let now = self.now();
        let from = ReadFrom::from(from);
        let found = match self.recent.read(name, &from, limits, now) {
            Some(hit) => Found::from(hit?),
            None => self.read_stored(name, from, limits, now).await?,
        };
        let row = self.live_after_read(name, found.row, now).await?;
        let payloads = futures::stream::iter(found.records.into_payloads().into_iter().map(Ok));
        collect_batch(row, found.start, limits, payloads).await
    }

    /// Overridden to join the records where they are found (the cache's records, or the
    /// buffer SQLite's rows were read into) without a `Record` and offset per record, on this
    /// task when the cache holds them, and to answer a read from the tail with one lookup of
    /// the stream's row.
    async fn read_joined(
        &self,
        name: &StreamName,
        from: ReadFrom,
        limits: ReadLimits,
        join: JoiningFor,
    ) -> Result<JoinedBatch, StorageError> {
        let now = self.now();
        let (row, start, records, body) =
            match self.recent.read_joined(name, &from, limits, now, join) {
                Some(hit) => {
                    let hit = hit?;
                    let row = self.live_after_read(name, Some(hit.row), now).await?;
                    (row, hit.start, hit.records, hit.body)
                }
                None => {
                    let found = self.read_stored(name, from, limits, now).await?;
                    let row = self.live_after_read(name, found.row, now).await?;
                    let records = found.records.len();
                    let body = found.records.join(join(&row.content_type));
                    (row, found.start, records, body)
                }
            };
        let end = start + records as u64;
        let up_to_date = end == row.next_index;
        Ok(JoinedBatch {
            body,
            records,
            next_offset: index_offset::encode(end),
            up_to_date,
            closed: up_to_date && row.closed,
            content_type: row.content_type,
        })
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
            .write(Change::ForgetAll, move |conn| {
                load_live(conn, &owned, now_ms(&*clock))?;
                run_now(remove_chain(&mut ForkDb(conn), &owned))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer takes stream rows from the cache only until a job runs in the batch: an
    /// append queued right after a delete of its stream, in the same batch, must see the
    /// delete (the cache learns of it only after the commit).
    #[tokio::test]
    async fn an_append_batched_after_a_delete_of_its_stream_is_refused() {
        let dir = std::env::temp_dir().join(format!(
            "courier-sqlite-batch-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        let store = SqliteStreamStorage::connect(dir.join("s.db"), SqliteStorageConfig::default())
            .await
            .expect("connect");
        let name = StreamName::new("doomed").expect("valid");
        let config = StreamConfig::with_content_type("text/plain");
        store.create(&name, config, vec![]).await.expect("create");
        // Now cached, with the row the append committed.
        store
            .append(&name, AppendRequest::record("first"))
            .await
            .expect("append");
        // Hold the writer in a batch of its own while the delete and the append queue up.
        let (started, running) = tokio::sync::oneshot::channel();
        let (release, held) = std::sync::mpsc::channel::<()>();
        // It touches no stream, so the cache keeps the row.
        let untouched = StreamName::new("untouched").expect("valid");
        let blocker = store.writer.write(Change::Forget(untouched), move |_conn| {
            let _ = started.send(());
            let _ = held.recv();
            Ok(())
        });
        tokio::pin!(blocker);
        assert!(futures::poll!(&mut blocker).is_pending());
        running.await.expect("the blocking job runs");
        let delete = store.delete(&name);
        let append = store.append(&name, AppendRequest::record("after delete"));
        tokio::pin!(delete, append);
        // One poll each queues them, in this order, behind the running batch.
        assert!(futures::poll!(&mut delete).is_pending());
        assert!(futures::poll!(&mut append).is_pending());
        release.send(()).expect("release");
        blocker.await.expect("blocker");
        delete.await.expect("delete");
        let refused = append.await;
        assert!(
            matches!(refused, Err(StorageError::NotFound { .. })),
            "{refused:?}"
        );
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A file written by the version 2 schema opens, reads back and takes appends.
    #[tokio::test]
    async fn the_storage_opens_a_version_2_file() {
        use courier_traits::storage::{
            AppendRequest, ReadLimits, StreamConfig, StreamName, StreamStorage,
        };

        use crate::sql_model::requested_key;

        let dir = std::env::temp_dir().join(format!(
            "courier-sqlite-schema-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("old.db");
        let config = StreamConfig::with_content_type("text/plain");
        {
            let mut conn = rusqlite::Connection::open(&path).expect("open");
            super::schema::migrate_to_version(&mut conn, 2).expect("old schema");
            conn.execute(
                "INSERT INTO courier_streams (name, content_type, expiry_kind, expiry_ms,
                     requested, next_index, last_access_ms) VALUES ('old', 'text/plain', 0, 0, ?1, 3, 0)",
                [requested_key(&config)],
            )
            .expect("stream row");
            for idx in 0..3i64 {
                conn.execute(
                    "INSERT INTO courier_records (stream, idx, data) VALUES ('old', ?1, ?2)",
                    (idx, vec![b'a' + idx as u8; 1024]),
                )
                .expect("record");
            }
        }
        let store = SqliteStreamStorage::connect(&path, SqliteStorageConfig::default())
            .await
            .expect("connect");
        let name = StreamName::new("old").expect("valid");
        store
            .append(&name, AppendRequest::record("new"))
            .await
            .expect("append");
        let batch = store
            .read(&name, None, ReadLimits::default())
            .await
            .expect("read");
        let payloads: Vec<Vec<u8>> = batch.records.iter().map(|r| r.data.to_vec()).collect();
        let mut expected: Vec<Vec<u8>> = (0..3u8).map(|i| vec![b'a' + i; 1024]).collect();
        expected.push(b"new".to_vec());
        assert_eq!(payloads, expected);
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
