//! The universal storage suite against `LogStreamStorage`, plus what the journal must keep
//! across a reopen, a torn tail, damage, and a kill -9 under load.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use courier::impls::log::{LogStorageConfig, LogStreamStorage};
use courier::storage::{
    AppendRequest, Expiry, ForkFrom, KeyedOutcome, KeyedRecord, ProducerStamp, ReadLimits,
    StorageError, StreamConfig, StreamName, StreamStorage, SubOffset,
};
use courier::traits::clock::ManualClock;
use courier_testkit::suites::FnStorageFactory;

/// The suite in a module of its own per sync mode (every group synced, or written only) and
/// memory budget (full chunks past it are spilled to files and read from there).
macro_rules! log_suite {
    ($module:ident, $fsync:expr, $resident:expr) => {
        mod $module {
            use super::*;

            courier_testkit::storage_suite!(
                // Every `connect` is a handle on one open directory (one process holds it), as
                // the race cases need two handles on one backend; expiry runs on the case's
                // manual clock.
                factory = {
                    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
                    let clock = ManualClock::starting_now();
                    let config = LogStorageConfig::default()
                        .with_clock(clock.shared())
                        .with_fsync_every_group($fsync)
                        .with_max_resident_bytes($resident);
                    let store = LogStreamStorage::open(dir.path(), config)
                        .await
                        .expect("open the log storage");
                    FnStorageFactory::new(move || {
                        let (store, _dir) = (store.clone(), dir.clone());
                        async move { store }
                    })
                    .with_clock(clock)
                },
                durable = true,
                shared = false,
                ttl = true,
                producers = true,
                forks = true,
                survives_restart = false,
                keyed_append = true,
            );
        }
    };
}

log_suite!(
    log_storage,
    true,
    LogStorageConfig::default().max_resident_bytes
);
log_suite!(
    log_storage_without_fsync,
    false,
    LogStorageConfig::default().max_resident_bytes
);
log_suite!(log_storage_spilling_every_full_chunk, true, 0);

fn name(text: &str) -> StreamName {
    StreamName::new(text).expect("valid name")
}

fn texts(batch: &courier::storage::ReadBatch) -> Vec<String> {
    batch
        .records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.data).into_owned())
        .collect()
}

async fn open(dir: &std::path::Path) -> LogStreamStorage {
    LogStreamStorage::open(dir, LogStorageConfig::default())
        .await
        .expect("open")
}

async fn read_texts(store: &LogStreamStorage, stream: &StreamName) -> Vec<String> {
    texts(
        &store
            .read(stream, None, ReadLimits::default())
            .await
            .expect("read"),
    )
}

/// Every kind of change made before a close is there after reopening: records, producer
/// state, writer sequence, the close flag, dedup keys, forks, deletes, and a TTL stream.
#[tokio::test]
async fn every_kind_of_change_survives_reopen() {
    every_kind_of_change_survives(LogStorageConfig::default, 0).await;
}

/// The same with the journal compacted whenever its dead bytes reach its live ones, and a
/// 20 MiB stream deleted before each close (so a compaction runs with every other stream in
/// the journal): the journal shrinks, and every change of the streams that exist (forks
/// reading through a deleted source, a name created again) is there after reopening.
#[tokio::test]
async fn every_kind_of_change_survives_compaction() {
    // Each close lets the compaction its deletes started finish, however slow the machine.
    let compacting = || {
        LogStorageConfig::default()
            .with_compact_dead_bytes(1)
            .with_compaction_close_wait(Duration::from_secs(60))
    };
    let dir = every_kind_of_change_survives(compacting, 20 << 20).await;
    let len = std::fs::metadata(dir.path().join("journal.log"))
        .expect("journal")
        .len();
    // Without compaction the dead stream alone is 20 MiB; with it, the live frames plus the
    // zeros allocated ahead (at most 8 MiB here).
    assert!(len < 12 << 20, "the journal is {len} bytes");
    assert!(
        !dir.path().join("journal.compact").exists(),
        "no compaction outlives the close"
    );
}

/// A journal that holds more dead bytes than the threshold when opened is compacted at once.
#[tokio::test]
async fn a_journal_opened_with_dead_bytes_is_compacted_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let journal = dir.path().join("journal.log");
    let (kept, dead) = (name("kept"), name("dead"));
    let text = || StreamConfig::with_content_type("text/plain");
    {
        let store = open(dir.path()).await;
        store
            .create(&kept, text(), vec![Bytes::from("k")])
            .await
            .expect("create");
        let big = vec![Bytes::from(vec![b'x'; 1 << 20]); 20];
        store.create(&dead, text(), big).await.expect("create");
        store.delete(&dead).await.expect("delete");
        store.close().await;
    }
    let before = std::fs::metadata(&journal).expect("journal").len();
    assert!(
        before > 20 << 20,
        "nothing compacted under the default threshold: {before}"
    );
    // The close right after lets the compaction the open started finish.
    let compacting = LogStorageConfig::default()
        .with_compact_dead_bytes(1 << 20)
        .with_compaction_close_wait(Duration::from_secs(60));
    let store = LogStreamStorage::open(dir.path(), compacting)
        .await
        .expect("open");
    store.close().await;
    let after = std::fs::metadata(&journal).expect("journal").len();
    assert!(
        after < 1 << 20,
        "compacted at open: {before} -> {after} bytes"
    );
    // A stray file of a compaction a crash interrupted is removed, the journal left whole.
    std::fs::write(dir.path().join("journal.compact"), b"half a compaction").expect("write");
    let store = open(dir.path()).await;
    assert_eq!(read_texts(&store, &kept).await, ["k"]);
    assert!(matches!(
        store.head(&dead).await,
        Err(StorageError::NotFound { .. })
    ));
    assert!(!dir.path().join("journal.compact").exists());
}

/// A compaction that cannot write its file (here a directory stands where it goes) leaves the
/// journal as it is: every call goes on, and everything is there after reopening.
#[tokio::test]
async fn a_compaction_that_fails_leaves_the_journal_in_use() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kept = name("kept");
    let text = || StreamConfig::with_content_type("text/plain");
    let compacting = || LogStorageConfig::default().with_compact_dead_bytes(1);
    {
        let store = LogStreamStorage::open(dir.path(), compacting())
            .await
            .expect("open");
        std::fs::create_dir(dir.path().join("journal.compact")).expect("block the rewrite");
        store.create(&kept, text(), vec![]).await.expect("create");
        for round in 0..3 {
            delete_a_stream_of(&store, 1 << 20).await;
            store
                .append(&kept, AppendRequest::record(format!("r{round}")))
                .await
                .expect("calls go on while compaction fails");
        }
        store.close().await;
        let len = std::fs::metadata(dir.path().join("journal.log"))
            .expect("journal")
            .len();
        assert!(len > 3 << 20, "not compacted: {len} bytes");
        std::fs::remove_dir(dir.path().join("journal.compact")).expect("unblock");
    }
    let store = open(dir.path()).await;
    assert_eq!(read_texts(&store, &kept).await, ["r0", "r1", "r2"]);
}

/// The body of [`every_kind_of_change_survives_reopen`], every open with `config`, a stream of
/// `dead_bytes` created and deleted before each close but the last; answers the directory.
async fn every_kind_of_change_survives(
    config: impl Fn() -> LogStorageConfig,
    dead_bytes: usize,
) -> tempfile::TempDir {
    let open = |dir: &std::path::Path| {
        let dir = dir.to_path_buf();
        let config = config();
        async move { LogStreamStorage::open(dir, config).await.expect("open") }
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let reborn = name("reborn");
    let (plain, closed, keyed, fork, gone, ttl) = (
        name("plain"),
        name("closed"),
        name("keyed"),
        name("fork"),
        name("gone"),
        name("ttl"),
    );
    let text = || StreamConfig::with_content_type("text/plain");
    let stamp = |seq| ProducerStamp::new("p", 1, seq).expect("stamp");
    let window = Duration::from_secs(3600);
    {
        let store = open(dir.path()).await;
        store
            .create(&reborn, text(), vec![Bytes::from("old")])
            .await
            .expect("create");
        store.delete(&reborn).await.expect("delete");
        store
            .create(&reborn, text(), vec![Bytes::from("new")])
            .await
            .expect("create again");
        store
            .create(&plain, text(), vec![Bytes::from("a")])
            .await
            .expect("create");
        for seq in 0..3 {
            let request = AppendRequest::record(format!("p{seq}"))
                .with_producer(stamp(seq))
                .with_writer_seq(format!("{seq:03}"));
            store.append(&plain, request).await.expect("append");
        }
        store.create(&closed, text(), vec![]).await.expect("create");
        let closing = AppendRequest::record("last")
            .with_producer(stamp(0))
            .and_close();
        store.append(&closed, closing).await.expect("close");
        store.create(&keyed, text(), vec![]).await.expect("create");
        let record = KeyedRecord::new("k", "tag-1", "once").expect("keyed");
        store
            .append_keyed(&keyed, vec![record], window)
            .await
            .expect("keyed append");
        let from_plain = StreamConfig {
            fork: Some(ForkFrom {
                source: plain.clone(),
                offset: None,
                sub_offset: SubOffset::None,
            }),
            ..StreamConfig::default()
        };
        store
            .create(&fork, from_plain, vec![Bytes::from("f")])
            .await
            .expect("fork");
        store.create(&gone, text(), vec![]).await.expect("create");
        store.delete(&gone).await.expect("delete");
        let ttl_config = StreamConfig {
            expiry: Expiry::Ttl(Duration::from_secs(3600)),
            ..text()
        };
        store
            .create(&ttl, ttl_config, vec![Bytes::from("t")])
            .await
            .expect("create ttl");
        delete_a_stream_of(&store, dead_bytes).await;
        store.close().await;
    }
    let store = open(dir.path()).await;
    assert_eq!(read_texts(&store, &plain).await, ["a", "p0", "p1", "p2"]);
    let retry = AppendRequest::record("p2")
        .with_producer(stamp(2))
        .with_writer_seq("002");
    let again = store.append(&plain, retry).await.expect("retry");
    assert!(again.duplicate, "producer state survived");
    let stale = store
        .append(&plain, AppendRequest::record("x").with_writer_seq("001"))
        .await;
    assert!(matches!(
        stale,
        Err(StorageError::WriterSeqRegression { .. })
    ));
    let closed_batch = store
        .read(&closed, None, ReadLimits::default())
        .await
        .expect("read");
    assert!(closed_batch.closed);
    let closer_retry = AppendRequest::record("last")
        .with_producer(stamp(0))
        .and_close();
    assert!(
        store
            .append(&closed, closer_retry)
            .await
            .expect("retry")
            .duplicate
    );
    let record = KeyedRecord::new("k", "tag-2", "twice").expect("keyed");
    let outcomes = store
        .append_keyed(&keyed, vec![record], window)
        .await
        .expect("keyed");
    assert_eq!(
        outcomes,
        [KeyedOutcome::Duplicate {
            tag: "tag-1".into()
        }]
    );
    assert_eq!(
        read_texts(&store, &fork).await,
        ["a", "p0", "p1", "p2", "f"]
    );
    assert!(matches!(
        store.head(&gone).await,
        Err(StorageError::NotFound { .. })
    ));
    assert_eq!(read_texts(&store, &ttl).await, ["t"]);
    // The fork still holds its source: deleting the source keeps it readable through the fork.
    store.delete(&plain).await.expect("delete source");
    delete_a_stream_of(&store, dead_bytes).await;
    store.close().await;
    let store = open(dir.path()).await;
    assert_eq!(
        read_texts(&store, &fork).await,
        ["a", "p0", "p1", "p2", "f"]
    );
    assert!(matches!(
        store.head(&plain).await,
        Err(StorageError::Gone { .. })
    ));
    assert_eq!(read_texts(&store, &reborn).await, ["new"]);
    store.close().await;
    dir
}

/// Creates a stream of `bytes` (in records of 1 MiB) and deletes it: that many dead bytes.
async fn delete_a_stream_of(store: &LogStreamStorage, bytes: usize) {
    let dead = name("dead");
    let config = StreamConfig::with_content_type("text/plain");
    let big = vec![Bytes::from(vec![b'x'; 1 << 20]); bytes >> 20];
    store.create(&dead, config, big).await.expect("create");
    store.delete(&dead).await.expect("delete");
}

/// Damage before the last frame stops the open, naming the byte, and leaves the file as it is.
#[tokio::test]
async fn damage_before_the_end_refuses_to_open_and_names_the_byte() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stream = name("s");
    {
        let store = open(dir.path()).await;
        let config = StreamConfig::with_content_type("text/plain");
        store.create(&stream, config, vec![]).await.expect("create");
        for i in 0..3 {
            store
                .append(&stream, AppendRequest::record(format!("r{i}")))
                .await
                .expect("append");
        }
        store.close().await;
    }
    let journal = dir.path().join("journal.log");
    let mut data = std::fs::read(&journal).expect("read");
    // A byte of the first frame's body: the create.
    data[20] ^= 0x55;
    std::fs::write(&journal, &data).expect("write");
    let err = LogStreamStorage::open(dir.path(), LogStorageConfig::default())
        .await
        .err()
        .expect("a damaged journal is refused");
    let message = err.to_string();
    assert!(message.contains("damaged at byte 0"), "{message}");
    assert!(!courier::Classify::is_retryable(&err), "{message}");
    assert_eq!(
        std::fs::read(&journal).expect("read"),
        data,
        "left as it is"
    );
}

/// One process at a time: a second open of a directory held by a live handle fails once the
/// lock wait runs out, and succeeds once the holder closed.
#[tokio::test]
async fn a_directory_is_held_by_one_open_storage() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = open(dir.path()).await;
    let quick = LogStorageConfig::default().with_lock_wait(Duration::from_millis(50));
    let err = LogStreamStorage::open(dir.path(), quick.clone())
        .await
        .err()
        .expect("locked");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
    first.close().await;
    LogStreamStorage::open(dir.path(), quick)
        .await
        .expect("open after close");
}

/// Dropping the last handle (as a process does on its way out, without `close`) returns only
/// once the writer wrote what was left and let the directory go: it opens again at once, with
/// the appends made under periodic syncs there.
#[tokio::test]
async fn dropping_the_last_handle_finishes_the_journal_before_it_returns() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stream = name("s");
    let periodic = || {
        LogStorageConfig::default()
            .with_fsync_every_group(false)
            .with_lock_wait(Duration::ZERO)
    };
    for round in 0..3 {
        let store = LogStreamStorage::open(dir.path(), periodic())
            .await
            .expect("the directory is free at once");
        if round == 0 {
            let config = StreamConfig::with_content_type("text/plain");
            store.create(&stream, config, vec![]).await.expect("create");
        }
        store
            .append(&stream, AppendRequest::record(format!("r{round}")))
            .await
            .expect("append");
        drop(store);
    }
    let store = open(dir.path()).await;
    assert_eq!(read_texts(&store, &stream).await, ["r0", "r1", "r2"]);
}

/// Two opens of one fresh directory at the same moment: exactly one holds it, the other is
/// refused once its lock wait runs out (never two writers on one journal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_opens_at_the_same_moment_one_holds_the_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let quick = || LogStorageConfig::default().with_lock_wait(Duration::from_millis(200));
    let (a, b) = tokio::join!(
        LogStreamStorage::open(dir.path(), quick()),
        LogStreamStorage::open(dir.path(), quick())
    );
    let opened = [a.is_ok(), b.is_ok()];
    assert_eq!(opened.iter().filter(|&&ok| ok).count(), 1, "{opened:?}");
    let refused = a.err().or(b.err()).expect("one refused");
    assert!(refused.to_string().contains("in use"), "{refused}");
}

/// Set in the child of [`kill_9_under_load_loses_nothing_acknowledged`]: the directory.
const CHILD_DIR_ENV: &str = "COURIER_TEST_LOG_CHILD_DIR";
/// Set in the child: its mode, see [`kill_9_case`].
const CHILD_SYNC_ENV: &str = "COURIER_TEST_LOG_CHILD_SYNC";
/// Streams the child appends to, one task each.
const CHILD_STREAMS: usize = 8;

/// A child process appends to eight streams concurrently and prints each acknowledged record;
/// it is killed with SIGKILL mid-load. Reopened, every stream holds exactly its records from
/// the first on, in order, with nothing missing up to the last one acknowledged and no gap or
/// duplicate after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_acknowledged() {
    kill_9_case("kill_9_under_load_loses_nothing_acknowledged", "full").await;
}

/// The same with calls answered once written to the OS (`sync=normal`): a kill -9 of the
/// process loses nothing acknowledged either (the page cache outlives the process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_acknowledged_without_fsync() {
    kill_9_case(
        "kill_9_under_load_loses_nothing_acknowledged_without_fsync",
        "normal",
    )
    .await;
}

/// The same while the journal is compacted again and again: beside the eight streams, the
/// child creates and deletes a 1 MiB stream in a loop, with compaction at 1 MiB of dead bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_compacting_loses_nothing_acknowledged() {
    kill_9_case(
        "kill_9_while_compacting_loses_nothing_acknowledged",
        "churn",
    )
    .await;
}

/// Runs the kill -9 case `test` (as the parent, or as its child when the child's variables are
/// set) with the child's storage in `mode`: `full` (every group synced), `normal` (written to
/// the OS), or `churn` (synced, with a stream created and deleted in a loop and compaction).
async fn kill_9_case(test: &str, mode: &str) {
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        let mode = std::env::var(CHILD_SYNC_ENV).unwrap_or_default();
        child_appends_forever(std::path::Path::new(&dir), &mode).await;
        return;
    }
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = std::env::current_exe().expect("test binary");
    let mut child = tokio::process::Command::new(exe)
        .args(["--exact", test])
        .env(CHILD_DIR_ENV, dir.path())
        .env(CHILD_SYNC_ENV, mode)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the child");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut acked = [None::<u64>; CHILD_STREAMS];
    let mut count = 0;
    // What the churn deleted, in bytes: enough for many compactions before the kill.
    let churn_goal: u64 = if mode == "churn" { 48 << 20 } else { 0 };
    let mut churned = 0;
    let collect = async {
        while let Some(line) = lines.next_line().await.expect("read the child") {
            if let Some(bytes) = line.strip_prefix("churned ") {
                churned = bytes.parse().expect("churned BYTES");
                if count >= 3_000 && churned >= churn_goal {
                    break;
                }
                continue;
            }
            let Some(ack) = line.strip_prefix("acked ") else {
                continue;
            };
            let (stream, seq) = ack.split_once(' ').expect("acked STREAM SEQ");
            let (stream, seq): (usize, u64) =
                (stream.parse().expect("stream"), seq.parse().expect("seq"));
            acked[stream] = Some(seq);
            count += 1;
            if count >= 3_000 && churned >= churn_goal {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(90), collect)
        .await
        .expect("3000 acknowledgements (and the churn) within 90 s");
    // SIGKILL: no destructor, no last write.
    child.start_kill().expect("kill -9");
    child.wait().await.expect("reap the child");
    if churn_goal > 0 {
        let len = std::fs::metadata(dir.path().join("journal.log"))
            .expect("journal")
            .len();
        // Without a compaction every deleted byte would still be in the file.
        assert!(
            len < churned / 2,
            "{churned} bytes were deleted, yet the journal is {len} bytes: it was not compacted"
        );
    }
    let store = open(dir.path()).await;
    for (i, last_acked) in acked.iter().enumerate() {
        let records = read_texts(&store, &name(&format!("load-{i}"))).await;
        let expected: Vec<String> = (0..records.len()).map(|n| format!("{i}:{n}")).collect();
        assert_eq!(
            records, expected,
            "stream {i}: in order, no gap, no duplicate"
        );
        if let Some(last) = last_acked {
            assert!(
                records.len() as u64 > *last,
                "stream {i}: record {last} was acknowledged, {} are there",
                records.len()
            );
        }
    }
}

async fn child_appends_forever(dir: &std::path::Path, mode: &str) {
    use std::io::Write;
    let config = LogStorageConfig::default()
        .with_fsync_every_group(mode != "normal")
        .with_compact_dead_bytes(1 << 20);
    let store = LogStreamStorage::open(dir, config).await.expect("open");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    // One thread prints, so lines from the tasks never interleave mid-line.
    std::thread::spawn(move || {
        let mut out = std::io::stdout().lock();
        for line in rx {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    });
    let tasks: Vec<_> = (0..CHILD_STREAMS)
        .map(|i| {
            let (store, tx) = (store.clone(), tx.clone());
            tokio::spawn(async move {
                let stream = name(&format!("load-{i}"));
                let config = StreamConfig::with_content_type("text/plain");
                store.create(&stream, config, vec![]).await.expect("create");
                for n in 0u64.. {
                    let request = AppendRequest::record(format!("{i}:{n}"));
                    store.append(&stream, request).await.expect("append");
                    if tx.send(format!("acked {i} {n}")).is_err() {
                        return;
                    }
                }
            })
        })
        .collect();
    if mode == "churn" {
        let (store, tx) = (store.clone(), tx.clone());
        tokio::spawn(async move {
            let stream = name("churn");
            let mut churned = 0u64;
            loop {
                let config = StreamConfig::with_content_type("text/plain");
                let records = vec![Bytes::from(vec![b'c'; 256 << 10]); 4];
                store
                    .create(&stream, config, records)
                    .await
                    .expect("create");
                store.delete(&stream).await.expect("delete");
                churned += 1 << 20;
                if tx.send(format!("churned {churned}")).is_err() {
                    return;
                }
            }
        });
    }
    for task in tasks {
        let _ = task.await;
    }
}
