//! Opening the storage a `--storage` value names.

use std::sync::Arc;

use courier::StreamStorage;

/// The storages the CLI can open, as written on the command line.
pub(crate) const STORAGE_FORMS: &str = "memory | sqlite:PATH[?sync=full|normal] | log:DIR[?sync=full|normal] | redis://HOST:PORT[/DB] | postgres://USER@HOST/DB";

/// `courier ingest`'s default storage (also `courier ingest keys`'): embedded SQLite under
/// `./data`.
pub(crate) const INGEST_DEFAULT_STORAGE: &str = "sqlite:./data/ingest.db";

/// Opens `spec`: `memory`, `sqlite:PATH`, `log:DIR`, `redis://…` or `postgres://…`.
pub(crate) async fn open(spec: &str) -> Result<Arc<dyn StreamStorage>, String> {
    let fail = |e: courier::StorageError| format!("cannot open storage {:?}: {e}", redacted(spec));
    if spec == "memory" {
        return Ok(Arc::new(courier::impls::memory::MemoryStreamStorage::new()));
    }
    if let Some(rest) = spec.strip_prefix("sqlite:") {
        let (path, fsync_every_commit) = sync_query("sqlite", rest)?;
        let path = std::path::Path::new(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
        }
        let store = courier::impls::sqlite::SqliteStreamStorage::connect(
            path,
            courier::impls::sqlite::SqliteStorageConfig::default()
                .with_fsync_every_commit(fsync_every_commit),
        )
        .await
        .map_err(fail)?;
        return Ok(Arc::new(store));
    }
    if let Some(rest) = spec.strip_prefix("log:") {
        let (dir, fsync_every_group) = sync_query("log", rest)?;
        if dir.is_empty() {
            return Err(
                "storage \"log:\" names no directory; expected log:DIR, e.g. log:./data/streams"
                    .to_owned(),
            );
        }
        let store = courier::impls::log::LogStreamStorage::open(
            dir,
            courier::impls::log::LogStorageConfig::default()
                .with_fsync_every_group(fsync_every_group),
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
        "unknown storage {:?}; expected {STORAGE_FORMS}",
        redacted(spec)
    ))
}

/// Splits `PATH[?sync=full|normal]` (after `kind:`) into the path and whether every commit is
/// synced to the device before it is acknowledged.
///
/// `full` (the default) acknowledges a write once it is on disk (SQLite's `synchronous =
/// FULL`; the log's `fdatasync` per group). `normal` acknowledges it once it is in the
/// operating system's page cache (SQLite's `NORMAL` in WAL mode; the log syncs at most a
/// second later): it survives a crash or kill -9 of the process but a power loss or OS crash
/// may drop the last commits, which is the guarantee of NATS JetStream's default file storage
/// (fsync at most every 2 minutes).
fn sync_query<'a>(kind: &str, rest: &'a str) -> Result<(&'a str, bool), String> {
    let Some((path, query)) = rest.rsplit_once('?') else {
        return Ok((rest, true));
    };
    match query {
        "sync=full" => Ok((path, true)),
        "sync=normal" => Ok((path, false)),
        other => Err(format!(
            "unknown {kind} option {other:?} in \"{kind}:{rest}\"; expected sync=full or sync=normal"
        )),
    }
}

/// `spec` fit for logs and error messages: a URL's password (`redis://:pw@h`,
/// `postgres://user:pw@h/db`) replaced by `***`, since logs travel further than config files.
pub(crate) fn redacted(spec: &str) -> String {
    let Some((scheme, rest)) = spec.split_once("://") else {
        return spec.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return spec.to_owned();
    };
    let userinfo = &rest[..at];
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => spec.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{open, redacted, sync_query};

    #[tokio::test]
    async fn log_storage_opens_a_directory_and_an_empty_one_is_named() {
        let error = open("log:").await.err().expect("no directory");
        assert!(error.contains("log:DIR"), "{error}");
        let error = open("log:./x?sync=off")
            .await
            .err()
            .expect("unknown option");
        assert!(error.contains("unknown log option"), "{error}");
        let dir = tempfile::tempdir().expect("temp dir");
        let spec = format!("log:{}", dir.path().join("streams").display());
        let store = open(&spec).await.expect("open");
        assert!(store.capabilities().durable);
        assert!(dir.path().join("streams/journal.log").exists());
    }

    #[test]
    fn sync_is_full_unless_asked_for_normal() {
        assert_eq!(
            sync_query("sqlite", "./data/b.db"),
            Ok(("./data/b.db", true))
        );
        assert_eq!(
            sync_query("sqlite", "./data/b.db?sync=full"),
            Ok(("./data/b.db", true))
        );
        assert_eq!(
            sync_query("sqlite", "./data/b.db?sync=normal"),
            Ok(("./data/b.db", false))
        );
        let error = sync_query("sqlite", "./b.db?sync=off").expect_err("unknown value");
        assert!(
            error.contains("sync=off") && error.contains("sync=normal"),
            "{error}"
        );
    }

    #[test]
    fn passwords_never_leave_in_logs() {
        assert_eq!(
            redacted("postgres://app:s3cret@db:5432/courier"),
            "postgres://app:***@db:5432/courier"
        );
        assert_eq!(
            redacted("redis://:pw@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redacted("redis://u:p@ss@host/0?x=a@b"),
            "redis://u:***@host/0?x=a@b",
            "the last @ before the path ends the userinfo"
        );
        for plain in [
            "memory",
            "sqlite:./data/streams.db",
            "postgres://app@db/courier",
            "redis://127.0.0.1:6379/",
            "redis://host/0?user=a@b",
        ] {
            assert_eq!(redacted(plain), plain);
        }
    }
}
