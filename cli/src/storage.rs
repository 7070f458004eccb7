//! Opening the storage a `--storage` value names.

use std::sync::Arc;

use courier::StreamStorage;

/// The storages the CLI can open, as written on the command line.
pub(crate) const STORAGE_FORMS: &str = "memory | sqlite:PATH[?sync=full|normal] | log:DIR[?sync=full|normal][&resident=SIZE|all] | redis://HOST:PORT[/DB] | postgres://USER@HOST/DB";

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
        let (path, options) = options("sqlite", rest, &["sync"])?;
        let fsync_every_commit = options.fsync;
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
        let (dir, options) = options("log", rest, &["sync", "resident"])?;
        if dir.is_empty() {
            return Err(
                "storage \"log:\" names no directory; expected log:DIR, e.g. log:./data/streams"
                    .to_owned(),
            );
        }
        let mut config =
            courier::impls::log::LogStorageConfig::default().with_fsync_every_group(options.fsync);
        if let Some(bytes) = options.resident {
            config = config.with_max_resident_bytes(bytes);
        }
        let store = courier::impls::log::LogStreamStorage::open(dir, config)
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

/// The options after `?` in `kind:PATH?…` (`&` between them).
#[derive(Debug, PartialEq, Eq)]
struct Options {
    /// `sync=full|normal`: whether every commit is synced to the device before it is
    /// acknowledged (see [`options`]).
    fsync: bool,
    /// `resident=SIZE|all` (the log): how many bytes of full chunks of records stay in memory
    /// before older ones go to spill files; `all` keeps every record in memory.
    resident: Option<usize>,
}

/// Splits `PATH[?OPTION[&OPTION]]` (after `kind:`) into the path and its options, of which
/// `kind` takes those named in `known`.
///
/// `sync=full` (the default) acknowledges a write once it is on disk (SQLite's `synchronous =
/// FULL`; the log's `fdatasync` per group). `normal` acknowledges it once it is in the
/// operating system's page cache (SQLite's `NORMAL` in WAL mode; the log syncs at most a
/// second later): it survives a crash or kill -9 of the process but a power loss or OS crash
/// may drop the last commits, which is the guarantee of NATS JetStream's default file storage
/// (fsync at most every 2 minutes).
fn options<'a>(kind: &str, rest: &'a str, known: &[&str]) -> Result<(&'a str, Options), String> {
    let mut options = Options {
        fsync: true,
        resident: None,
    };
    let Some((path, query)) = rest.rsplit_once('?') else {
        return Ok((rest, options));
    };
    let expected = known
        .iter()
        .map(|k| match *k {
            "sync" => "sync=full|normal",
            _ => "resident=SIZE|all (e.g. 64MiB)",
        })
        .collect::<Vec<_>>()
        .join(" or ");
    for option in query.split('&') {
        let unknown = || {
            format!("unknown {kind} option {option:?} in \"{kind}:{rest}\"; expected {expected}")
        };
        let (key, value) = option.split_once('=').ok_or_else(unknown)?;
        if !known.contains(&key) {
            return Err(unknown());
        }
        match (key, value) {
            ("sync", "full") => options.fsync = true,
            ("sync", "normal") => options.fsync = false,
            ("resident", "all") => options.resident = Some(usize::MAX),
            ("resident", size) => {
                options.resident = Some(bytes(size).ok_or_else(|| {
                    format!("{kind} option {option:?} in \"{kind}:{rest}\" is not a size; expected a number of bytes, optionally with KiB, MiB or GiB (e.g. resident=64MiB), or resident=all")
                })?)
            }
            _ => return Err(unknown()),
        }
    }
    Ok((path, options))
}

/// `SIZE`: a number of bytes, optionally followed by `KiB`, `MiB` or `GiB`.
fn bytes(size: &str) -> Option<usize> {
    let (digits, unit) = match size.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => size.split_at(at),
        None => (size, ""),
    };
    let shift = match unit {
        "" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        _ => return None,
    };
    digits.parse::<usize>().ok()?.checked_mul(1 << shift)
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
    use super::{Options, open, options, redacted};

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

    fn sync(fsync: bool) -> Options {
        Options {
            fsync,
            resident: None,
        }
    }

    #[test]
    fn sync_is_full_unless_asked_for_normal() {
        let sqlite = |rest| options("sqlite", rest, &["sync"]);
        assert_eq!(sqlite("./data/b.db"), Ok(("./data/b.db", sync(true))));
        assert_eq!(
            sqlite("./data/b.db?sync=full"),
            Ok(("./data/b.db", sync(true)))
        );
        assert_eq!(
            sqlite("./data/b.db?sync=normal"),
            Ok(("./data/b.db", sync(false)))
        );
        let error = sqlite("./b.db?sync=off").expect_err("unknown value");
        assert!(
            error.contains("sync=off") && error.contains("sync=full|normal"),
            "{error}"
        );
        let error = sqlite("./b.db?resident=1MiB").expect_err("not a SQLite option");
        assert!(error.contains("unknown sqlite option"), "{error}");
    }

    #[test]
    fn the_logs_memory_budget_is_a_size_or_all() {
        let log = |rest| options("log", rest, &["sync", "resident"]);
        let resident = |fsync, bytes| Options {
            fsync,
            resident: Some(bytes),
        };
        assert_eq!(log("d?resident=64MiB"), Ok(("d", resident(true, 64 << 20))));
        assert_eq!(
            log("d?sync=normal&resident=512KiB"),
            Ok(("d", resident(false, 512 << 10)))
        );
        assert_eq!(log("d?resident=1000"), Ok(("d", resident(true, 1000))));
        assert_eq!(log("d?resident=2GiB"), Ok(("d", resident(true, 2 << 30))));
        assert_eq!(log("d?resident=all"), Ok(("d", resident(true, usize::MAX))));
        for bad in [
            "d?resident=64MB",
            "d?resident=",
            "d?resident=-1",
            "d?resident=1.5GiB",
        ] {
            let error = log(bad).expect_err(bad);
            assert!(error.contains("is not a size"), "{bad}: {error}");
        }
        let error = log("d?colour=red").expect_err("unknown option");
        assert!(error.contains("resident=SIZE|all"), "{error}");
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
