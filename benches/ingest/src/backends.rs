//! The storages measured: the server's storage spec for its process, and the same storage's
//! spec for the ceiling's process, on one server (Redis, Postgres: the testkit's native
//! fixtures) or in one directory (SQLite).

use std::sync::Arc;

use courier::impls::memory::MemoryStreamStorage;
use courier::impls::postgres::{PgStorageConfig, PgStreamStorage};
use courier::impls::redis::{RedisStorageConfig, RedisStreamStorage};
use courier::impls::sqlite::{SqliteStorageConfig, SqliteStreamStorage};
use courier::storage::StreamStorage;
use courier_testkit::fixtures::{Postgres, Redis};

/// The storages `run` knows, by the name given in `STORAGES`.
pub(crate) const NAMES: [&str; 4] = ["memory", "sqlite", "redis", "postgres"];

/// Opens a storage spec: `memory`, `sqlite:PATH`, `redis://…` or `postgres://…` (the forms of
/// `courier streams --storage`), with each storage's default settings.
pub(crate) async fn open(spec: &str) -> Result<Arc<dyn StreamStorage>, String> {
    let fail = |e: courier::storage::StorageError| format!("cannot open {spec}: {e}");
    if spec == "memory" {
        Ok(Arc::new(MemoryStreamStorage::new()))
    } else if let Some(path) = spec.strip_prefix("sqlite:") {
        let store = SqliteStreamStorage::connect(path, SqliteStorageConfig::default());
        Ok(Arc::new(store.await.map_err(fail)?))
    } else if spec.starts_with("redis://") {
        let store = RedisStreamStorage::connect(spec, RedisStorageConfig::default());
        Ok(Arc::new(store.await.map_err(fail)?))
    } else if spec.starts_with("postgres://") {
        let store = PgStreamStorage::connect(spec, PgStorageConfig::default());
        Ok(Arc::new(store.await.map_err(fail)?))
    } else {
        Err(format!("unknown storage spec {spec:?}"))
    }
}

/// One storage ready to measure; dropping it stops its server and removes its files.
pub(crate) struct Backend {
    /// What the child server opens.
    pub(crate) server_spec: String,
    /// The same storage for the ceiling's process (for SQLite another file beside the
    /// server's).
    pub(crate) ceiling_spec: String,
    _redis: Option<Redis>,
    _postgres: Option<Postgres>,
    _dir: tempfile::TempDir,
}

impl Backend {
    /// Starts what `name` needs (a native Redis or Postgres from the testkit, a fresh
    /// directory for SQLite).
    pub(crate) async fn start(name: &str) -> Result<Backend, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let (mut redis, mut postgres) = (None, None);
        let (server_spec, ceiling_spec) = match name {
            "memory" => ("memory".to_owned(), "memory".to_owned()),
            // Two files in one directory: one writer per file, as in production.
            "sqlite" => (
                format!("sqlite:{}", dir.path().join("server.db").display()),
                format!("sqlite:{}", dir.path().join("ceiling.db").display()),
            ),
            "redis" => {
                let server = Redis::start().await.map_err(|e| format!("redis: {e}"))?;
                let url = server.url();
                redis = Some(server);
                (url.clone(), url)
            }
            "postgres" => {
                let server = Postgres::start()
                    .await
                    .map_err(|e| format!("postgres: {e}"))?;
                let url = server.url();
                postgres = Some(server);
                (url.clone(), url)
            }
            other => return Err(format!("unknown storage {other:?}; one of {NAMES:?}")),
        };
        Ok(Backend {
            ceiling_spec,
            server_spec,
            _redis: redis,
            _postgres: postgres,
            _dir: dir,
        })
    }
}
