//! Lone appends committed on their caller's thread (`writer.rs`): when they may, that they
//! never wait for another process's write lock, and that the WAL is still checkpointed when
//! commits only note that a checkpoint is due (`checkpoint.rs`): by the checkpoint thread,
//! and by the writer thread past its mark.

use std::time::{Duration, Instant};

use courier_traits::storage::{AppendRequest, ReadLimits, StreamConfig, StreamName, StreamStorage};

use super::recent::Version;
use super::{SqliteStorageConfig, SqliteStreamStorage};

/// A fresh directory, removed when dropped (a failing test's too).
fn temp_dir(what: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("courier-sqlite-inline-{what}-"))
        .tempdir()
        .expect("temp dir")
}

async fn storage(dir: &std::path::Path, fsync: bool) -> (SqliteStreamStorage, StreamName) {
    let config = SqliteStorageConfig::default().with_fsync_every_commit(fsync);
    let store = SqliteStreamStorage::connect(dir.join("s.db"), config)
        .await
        .expect("connect");
    let name = StreamName::new("lone").expect("valid");
    store
        .create(&name, StreamConfig::with_content_type("text/plain"), vec![])
        .await
        .expect("create");
    (store, name)
}

/// Without fsync a lone append is durable by the end of its first poll (no hop to the writer
/// thread); with fsync per commit it still goes through the writer thread, so a caller never
/// blocks on a disk flush.
#[tokio::test]
async fn a_lone_append_commits_in_its_first_poll_only_without_fsync() {
    for fsync in [false, true] {
        let dir = temp_dir("first-poll");
        let (store, name) = storage(dir.path(), fsync).await;
        let append = store.append(&name, AppendRequest::record("one"));
        tokio::pin!(append);
        let outcome = match futures::poll!(&mut append) {
            std::task::Poll::Ready(outcome) => {
                assert!(
                    !fsync,
                    "with fsync the append goes through the writer thread"
                );
                outcome
            }
            std::task::Poll::Pending => {
                assert!(
                    fsync,
                    "without fsync a lone append commits in its first poll"
                );
                append.await
            }
        };
        outcome.expect("append");
        let read = store
            .read(&name, None, ReadLimits::default())
            .await
            .expect("read");
        assert_eq!(read.records.len(), 1, "fsync {fsync}");
        store.close().await;
    }
}

/// While another connection (another process) holds the write lock, a lone append queues
/// for the writer thread instead of waiting for the lock on its caller's thread, and commits
/// once the lock is free.
#[tokio::test]
async fn a_lone_append_does_not_wait_for_another_writer_on_its_callers_thread() {
    let dir = temp_dir("locked");
    let (store, name) = storage(dir.path(), false).await;
    let other = rusqlite::Connection::open(dir.path().join("s.db")).expect("other connection");
    other.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let append = store.append(&name, AppendRequest::record("queued"));
    tokio::pin!(append);
    let polled = Instant::now();
    assert!(futures::poll!(&mut append).is_pending());
    // The storage's busy timeout is 10 s: waiting for it would take that long.
    assert!(
        polled.elapsed() < Duration::from_secs(2),
        "{:?}",
        polled.elapsed()
    );
    other.execute_batch("ROLLBACK").expect("unlock");
    append.await.expect("append");
    // The connection's busy timeout is back: the thread's next batch still waits for a lock
    // (SQLite's busy wait is real time, so the other writer holds it a real 200 ms).
    other.execute_batch("BEGIN IMMEDIATE").expect("lock again");
    let waiting = store.append(&name, AppendRequest::record("waits"));
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        other.execute_batch("COMMIT").expect("unlock again");
    });
    waiting
        .await
        .expect("the append waits for the lock, then commits");
    release.join().expect("release");
    let read = store
        .read(&name, None, ReadLimits::default())
        .await
        .expect("read");
    let payloads: Vec<&[u8]> = read.records.iter().map(|r| &r.data[..]).collect();
    assert_eq!(payloads, [&b"queued"[..], &b"waits"[..]]);
    store.close().await;
}

/// The WAL's bound: the writer thread checkpoints from 4 000 pages (16 MB), and the checkpoint
/// thread's passes usually keep it far lower.
const WAL_BOUND: u64 = 20 << 20;

/// Appends `count` records of 1 KiB one after another (with or without `fsync` per commit)
/// and checks that the WAL stayed under [`WAL_BOUND`] and every record reads back.
async fn appends_keep_the_wal_checkpointed(what: &str, fsync: bool, count: usize) {
    let dir = temp_dir(what);
    let (store, name) = storage(dir.path(), fsync).await;
    for _ in 0..count {
        store
            .append(&name, AppendRequest::record(vec![7u8; 1024]))
            .await
            .expect("append");
    }
    let wal = std::fs::metadata(dir.path().join("s.db-wal"))
        .expect("wal")
        .len();
    assert!(wal < WAL_BOUND, "the WAL grew to {wal} bytes");
    let read = store
        .read(&name, None, ReadLimits::default())
        .await
        .expect("read");
    assert_eq!(read.records.len(), count);
    store.close().await;
}

/// Lone appends only note that the WAL needs a checkpoint; the checkpoint thread runs it, or
/// the writer thread past its mark, so the WAL stays bounded however many lone appends come
/// (without the checkpoint, 2 000 appends of 1 KiB leave it at ~30 MB, ~7 500 pages).
#[tokio::test]
async fn lone_appends_keep_the_wal_checkpointed() {
    appends_keep_the_wal_checkpointed("checkpoint", false, 2000).await;
}

/// Commits on the writer thread also only note that a checkpoint is due, and it runs on the
/// checkpoint thread or, past the writer's mark, after the batch is answered: the WAL still
/// stays bounded (with fsync per commit every append goes through the writer thread; without
/// the checkpoint, 2 000 appends of 1 KiB leave the WAL at ~30 MB).
#[tokio::test]
async fn writer_thread_commits_keep_the_wal_checkpointed() {
    appends_keep_the_wal_checkpointed("checkpoint-writer", true, 2000).await;
}

/// A storage on a file checks its cache's freshness on the wal-index header (one `pread`), not
/// with `PRAGMA data_version` (whose read transaction takes `fcntl` locks), and a commit moves
/// the reading; once closed, it takes none, so the cache answers nothing.
#[tokio::test]
async fn the_cache_checks_freshness_on_the_wal_index_header() {
    let dir = temp_dir("wal-index-header");
    let (store, name) = storage(dir.path(), true).await;
    let before = store.cache_freshness();
    assert!(
        matches!(before, Some(Version::Header(_))),
        "freshness read as {before:?}, not from the wal-index header"
    );
    store
        .append(&name, AppendRequest::record(b"one".to_vec()))
        .await
        .expect("append");
    let after = store.cache_freshness();
    assert!(matches!(after, Some(Version::Header(_))) && after != before);
    store.close().await;
    assert_eq!(store.cache_freshness(), None, "a reading after close");
}

/// The checkpoint thread copies the WAL into the database below the writer thread's mark: 400
/// appends of 1 KiB take the WAL past 1 000 pages but not to 4 000, so only that thread can
/// have moved the records into the database file.
#[tokio::test]
async fn the_checkpoint_thread_copies_the_wal_below_the_writers_mark() {
    for fsync in [false, true] {
        let dir = temp_dir("checkpoint-thread");
        let (store, name) = storage(dir.path(), fsync).await;
        for _ in 0..400 {
            store
                .append(&name, AppendRequest::record(vec![7u8; 1024]))
                .await
                .expect("append");
        }
        // The thread's first pass, waited for (within a bound: it is an OS thread).
        let passes = store.wait_for_checkpoint_passes(1, Duration::from_secs(10));
        assert!(passes >= 1, "fsync {fsync}: no checkpoint pass");
        let copied = std::fs::metadata(dir.path().join("s.db"))
            .expect("database")
            .len();
        assert!(
            copied > 300 << 10,
            "fsync {fsync}: the database file holds {copied} bytes: the pass copied nothing"
        );
        store.close().await;
    }
}

/// A reader that holds a transaction open (another process: a shell, a backup) keeps the WAL
/// from starting over, and nothing more: the writer thread's checkpoints past 4 000 pages do
/// not wait for it (each wait would hold every write up; a checkpoint that waits for readers
/// up to the busy timeout would take 3 000 appends past a minute). Once it lets go, the WAL
/// starts over.
#[tokio::test]
async fn a_reader_holding_the_wal_holds_no_write_up() {
    let dir = temp_dir("checkpoint-reader");
    let (store, name) = storage(dir.path(), false).await;
    let append_many = |count: usize| {
        let (store, name) = (store.clone(), name.clone());
        async move {
            for _ in 0..count {
                store
                    .append(&name, AppendRequest::record(vec![7u8; 1024]))
                    .await
                    .expect("append");
            }
        }
    };
    // The WAL's frames, from a checkpoint pass of its own (retried while another runs: it
    // then reports none).
    let wal_frames = |conn: &rusqlite::Connection| -> i64 {
        for _ in 0..1000 {
            let (busy, frames): (i64, i64) = conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .expect("wal size");
            if frames >= 0 {
                return frames;
            }
            assert_eq!(busy, 1, "no frames, yet not busy");
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("another checkpoint kept running for a second");
    };
    let reader = rusqlite::Connection::open(dir.path().join("s.db")).expect("reader");
    reader.execute_batch("BEGIN").expect("begin");
    let _: i64 = reader
        .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
        .expect("read");
    // A bound in real time: SQLite's waits are real time.
    tokio::time::timeout(Duration::from_secs(60), append_many(3000))
        .await
        .expect("appends held up by the reader");
    let observer = rusqlite::Connection::open(dir.path().join("s.db")).expect("observer");
    let frames = wal_frames(&observer);
    assert!(
        frames > 4000,
        "the WAL has {frames} frames: the test needs it past 4 000"
    );
    reader.execute_batch("COMMIT").expect("let go");
    append_many(1500).await;
    let after = wal_frames(&observer);
    assert!(
        after < frames,
        "the WAL did not start over once the reader let go: {after} frames, {frames} before"
    );
    store.close().await;
}

/// Two storages on one file at the same moment (two nodes of a deployment, or two processes):
/// each has its own checkpoint thread, nudged by its own commits, and both append at once.
/// Every record of both is read back, both threads made passes, and the WAL stays bounded:
/// their 8 000 commits would take it to about 65 MB if it never started over.
#[tokio::test]
async fn two_storages_on_one_file_checkpoint_concurrently() {
    const APPENDS_EACH: usize = 4000;
    for fsync in [false, true] {
        let dir = temp_dir("checkpoint-two");
        let (first, name) = storage(dir.path(), fsync).await;
        let config = SqliteStorageConfig::default().with_fsync_every_commit(fsync);
        let second = SqliteStreamStorage::connect(dir.path().join("s.db"), config)
            .await
            .expect("connect the second");
        let append_many = |store: &SqliteStreamStorage, byte: u8| {
            let (store, name) = (store.clone(), name.clone());
            async move {
                for _ in 0..APPENDS_EACH {
                    store
                        .append(&name, AppendRequest::record(vec![byte; 1024]))
                        .await
                        .expect("append");
                }
            }
        };
        tokio::join!(append_many(&first, 1), append_many(&second, 2));
        for store in [&first, &second] {
            let passes = store.wait_for_checkpoint_passes(1, Duration::from_secs(10));
            assert!(
                passes >= 1,
                "fsync {fsync}: a storage's thread made no pass"
            );
        }
        let wal = std::fs::metadata(dir.path().join("s.db-wal"))
            .expect("wal")
            .len();
        assert!(
            wal < WAL_BOUND,
            "fsync {fsync}: the WAL grew to {wal} bytes"
        );
        let mut counts = [0usize; 2];
        let mut from = None;
        loop {
            let read = first
                .read(&name, from.clone(), ReadLimits::default())
                .await
                .expect("read");
            if read.records.is_empty() {
                break;
            }
            for record in &read.records {
                counts[usize::from(record.data[0] - 1)] += 1;
            }
            from = Some(read.next_offset.clone());
            if read.up_to_date {
                break;
            }
        }
        assert_eq!(
            counts, [APPENDS_EACH; 2],
            "fsync {fsync}: records read back"
        );
        first.close().await;
        second.close().await;
    }
}
