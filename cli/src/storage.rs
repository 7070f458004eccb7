//! Opening the storage a `--storage` value names.

use std::sync::Arc;

use courier::StreamStorage;

/// The storages the CLI can open, as written on the command line.
pub(crate) const STORAGE_FORMS: &str =
    "memory | sqlite:PATH | redis://HOST:PORT[/DB] | postgres://USER@HOST/DB";

/// `courier ingest`'s default storage (also `courier ingest keys`'): embedded SQLite under
/// `./data`.
pub(crate) const INGEST_DEFAULT_STORAGE: &str = "sqlite:./data/ingest.db";

/// Opens `spec`: `memory`, `sqlite:PATH`, `redis://…` or `postgres://…`.
pub(crate) async fn open(spec: &str) -> Result<Arc<dyn StreamStorage>, String> {
    let fail = |e: courier::StorageError| format!("cannot open storage {spec:?}: {e}");
    if spec == "memory" {
        return Ok(Arc::new(courier::impls::memory::MemoryStreamStorage::new()));
    }
    if let Some(path) = spec.strip_prefix("sqlite:") {
        let path = std::path::Path::new(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
        }
        let store = courier::impls::sqlite::SqliteStreamStorage::connect(
            path,
            courier::impls::sqlite::SqliteStorageConfig::default(),
        )
        .await
        .map_err(fail)?;
        return Ok(Arc::new(store));
    }
    if spec.starts_with("redis://") || spec.starts_with("rediss://") {
        let config = courier::impls::redis::RedisStorageConfig::default();
        let store = courier::impls::redis::RedisStreamStorage::connect(spec, config)
            .await
            .map_err(fail)?;
        return Ok(Arc::new(store));
    }
    if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
        let config = courier::impls::postgres::PgStorageConfig::default();
        let store = courier::impls::postgres::PgStreamStorage::connect(spec, config)
            .await
            .map_err(fail)?;
        return Ok(Arc::new(store));
    }
    Err(format!(
        "unknown storage {spec:?}; expected {STORAGE_FORMS}"
    ))
}
