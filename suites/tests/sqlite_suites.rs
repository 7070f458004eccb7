//! The universal storage suite against `SqliteStreamStorage`, plus durability across reopen.

use async_trait::async_trait;
use courier::impls::sqlite::{SqliteStorageConfig, SqliteStreamStorage};
use courier::storage::{
    AppendRequest, Offset, ProducerStamp, ReadLimits, StorageError, StreamConfig, StreamName,
    StreamStorage, WaitOutcome,
};
use courier::traits::clock::ManualClock;
use courier_testkit::suites::StorageFactory;
use courier_testkit::suites::storage::create_tail;
use std::time::Duration;

/// Every `connect` opens the same database file: instances share the data, and wake each
/// other's waits only through the file (each has its own in-process wake-ups). Expiry runs on
/// the factory's manual clock.
struct SqliteFactory {
    dir: tempfile::TempDir,
    clock: ManualClock,
    /// `synchronous = FULL` (the default) or `NORMAL`, where a lone append commits on its
    /// caller's thread instead of the writer thread's.
    fsync: bool,
}

impl SqliteFactory {
    fn new() -> SqliteFactory {
        SqliteFactory {
            dir: tempfile::tempdir().expect("temp dir"),
            clock: ManualClock::starting_now(),
            fsync: true,
        }
    }

    fn without_fsync() -> SqliteFactory {
        SqliteFactory {
            fsync: false,
            ..SqliteFactory::new()
        }
    }
}

#[async_trait]
impl StorageFactory for SqliteFactory {
    type Storage = SqliteStreamStorage;
    async fn connect(&self) -> SqliteStreamStorage {
        let config = SqliteStorageConfig::default()
            .with_clock(self.clock.shared())
            .with_fsync_every_commit(self.fsync);
        SqliteStreamStorage::connect(self.dir.path().join("streams.db"), config)
            .await
            .expect("open sqlite")
    }
    fn clock(&self) -> Option<ManualClock> {
        Some(self.clock.clone())
    }
}

/// The suite in a module of its own per factory (with and without fsync per commit).
macro_rules! sqlite_suite {
    ($module:ident, $factory:expr) => {
        mod $module {
            use super::*;

            courier_testkit::storage_suite!(
                factory = $factory,
                durable = true,
                shared = true,
                ttl = true,
                producers = true,
                forks = true,
                survives_restart = false,
                keyed_append = true,
            );
        }
    };
}

sqlite_suite!(sqlite_storage, SqliteFactory::new());
sqlite_suite!(sqlite_storage_without_fsync, SqliteFactory::without_fsync());

/// Everything acknowledged before the storage is closed is there after reopening the file,
/// including producer state (a retry after the restart is still a duplicate) and the close flag.
#[tokio::test]
async fn data_and_state_survive_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nested/dir/streams.db");
    let name = StreamName::new("durable").expect("valid");
    {
        let store = SqliteStreamStorage::connect(&path, SqliteStorageConfig::default())
            .await
            .expect("open");
        store
            .create(&name, StreamConfig::with_content_type("text/plain"), vec![])
            .await
            .expect("create");
        for seq in 0..10u64 {
            let stamp = ProducerStamp::new("p", 0, seq).expect("stamp");
            store
                .append(
                    &name,
                    AppendRequest::record(format!("r{seq}")).with_producer(stamp),
                )
                .await
                .expect("append");
        }
        store
            .append(&name, AppendRequest::close_only())
            .await
            .expect("close");
        store.close().await;
    }
    let store = SqliteStreamStorage::connect(&path, SqliteStorageConfig::default())
        .await
        .expect("reopen");
    let batch = store
        .read(&name, None, ReadLimits::default())
        .await
        .expect("read");
    let got: Vec<_> = batch
        .records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.data).into_owned())
        .collect();
    assert_eq!(got, (0..10).map(|i| format!("r{i}")).collect::<Vec<_>>());
    assert!(batch.closed, "the close flag is durable");
    let retry = store
        .append(
            &name,
            AppendRequest::record("r9")
                .with_producer(ProducerStamp::new("p", 0, 9).expect("stamp")),
        )
        .await;
    assert!(
        retry.is_err(),
        "closed stream refuses the stale retry rather than duplicating it: {retry:?}"
    );
}

/// A closed pool reports a retryable error, naming the cause.
#[tokio::test]
async fn closed_pool_is_a_retryable_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store =
        SqliteStreamStorage::connect(dir.path().join("s.db"), SqliteStorageConfig::default())
            .await
            .expect("open");
    store.close().await;
    let err = store
        .head(&StreamName::new("x").expect("valid"))
        .await
        .expect_err("closed");
    assert!(courier::Classify::is_retryable(&err), "{err}");
}

/// Group commit: appends that fail validation, batched with good ones, fail alone — the good
/// ones all commit, and nothing of the failed ones is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_appends_in_a_batch_do_not_affect_the_others() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = std::sync::Arc::new(
        SqliteStreamStorage::connect(dir.path().join("s.db"), SqliteStorageConfig::default())
            .await
            .expect("open"),
    );
    let name = StreamName::new("batch").expect("valid");
    store
        .create(&name, StreamConfig::with_content_type("text/plain"), vec![])
        .await
        .expect("create");
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let (store, name) = (store.clone(), name.clone());
            tokio::spawn(async move {
                let request = if i % 2 == 0 {
                    AppendRequest::record(format!("good {i}"))
                } else {
                    // A wrong content type: refused after the checks, inside the batch.
                    AppendRequest::record(format!("bad {i}")).with_content_type("application/json")
                };
                store.append(&name, request).await.is_ok()
            })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        accepted += usize::from(task.await.expect("task"));
    }
    assert_eq!(accepted, 50);
    let batch = store
        .read(&name, None, ReadLimits::default())
        .await
        .expect("read");
    assert_eq!(batch.records.len(), 50);
    assert!(
        batch.records.iter().all(|r| r.data.starts_with(b"good")),
        "a refused append left data behind"
    );
}

/// Group commit decides a batch's appends to one stream in queue order against the state the
/// earlier ones left: producer dedup and gaps, writer sequence and close all see them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_in_one_batch_see_each_other() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store =
        SqliteStreamStorage::connect(dir.path().join("s.db"), SqliteStorageConfig::default())
            .await
            .expect("open");
    let name = StreamName::new("ordered").expect("valid");
    store
        .create(&name, StreamConfig::with_content_type("text/plain"), vec![])
        .await
        .expect("create");
    let stamp = |seq| ProducerStamp::new("p", 0, seq).expect("valid");
    let requests = vec![
        AppendRequest::record("a").with_producer(stamp(0)),
        AppendRequest::record("b").with_producer(stamp(1)),
        AppendRequest::record("b again").with_producer(stamp(1)),
        AppendRequest::record("c").with_writer_seq("2"),
        AppendRequest::record("stale seq").with_writer_seq("10"),
        AppendRequest::record("gap").with_producer(stamp(5)),
        AppendRequest::record("d")
            .with_producer(stamp(2))
            .and_close(),
        AppendRequest::record("after close"),
    ];
    // Polled in order from one task, the appends are queued in order and mostly share a batch.
    let results =
        futures::future::join_all(requests.into_iter().map(|r| store.append(&name, r))).await;
    let verdicts: Vec<&str> = results
        .iter()
        .map(|r| match r {
            Ok(o) if o.duplicate => "duplicate",
            Ok(_) => "ok",
            Err(StorageError::WriterSeqRegression { .. }) => "seq",
            Err(StorageError::ProducerSeqGap { .. }) => "gap",
            Err(StorageError::Closed { .. }) => "closed",
            Err(_) => "other",
        })
        .collect();
    assert_eq!(
        verdicts,
        ["ok", "ok", "duplicate", "ok", "seq", "gap", "ok", "closed"]
    );
    let batch = store
        .read(&name, None, ReadLimits::default())
        .await
        .expect("read");
    let data: Vec<&[u8]> = batch.records.iter().map(|r| &r.data[..]).collect();
    assert_eq!(data, [&b"a"[..], b"b", b"c", b"d"]);
    assert!(batch.closed);
    // The producer state committed with the batch: seq 3 continues, a retry of 2 is a duplicate.
    drop(store);
    let store =
        SqliteStreamStorage::connect(dir.path().join("s.db"), SqliteStorageConfig::default())
            .await
            .expect("reopen");
    let retry = store
        .append(
            &name,
            AppendRequest::record("d")
                .with_producer(stamp(2))
                .and_close(),
        )
        .await
        .expect("the closing append's retry is a duplicate");
    assert!(retry.duplicate && retry.closed);
}

/// A batch's appends to many streams are written together; each stream keeps its own order
/// and state, and refusals (missing, closed) stay per stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_to_many_streams_in_one_batch() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store =
        SqliteStreamStorage::connect(dir.path().join("s.db"), SqliteStorageConfig::default())
            .await
            .expect("open");
    let names: Vec<StreamName> = (0..20)
        .map(|i| StreamName::new(&format!("s{i}")).expect("valid"))
        .collect();
    for name in &names[..19] {
        store
            .create(name, StreamConfig::with_content_type("text/plain"), vec![])
            .await
            .expect("create");
    }
    store
        .append(&names[18], AppendRequest::close_only())
        .await
        .expect("close");
    // s19 does not exist; s18 is closed.
    let appends = (0..3).flat_map(|round| {
        names
            .iter()
            .map(move |name| (name.clone(), format!("{name}:{round};")))
    });
    let results = futures::future::join_all(appends.map(|(name, data)| {
        let store = &store;
        async move { store.append(&name, AppendRequest::record(data)).await }
    }))
    .await;
    for (i, result) in results.iter().enumerate() {
        match i % 20 {
            19 => assert!(
                matches!(result, Err(StorageError::NotFound { .. })),
                "{result:?}"
            ),
            18 => assert!(
                matches!(result, Err(StorageError::Closed { .. })),
                "{result:?}"
            ),
            _ => assert!(result.is_ok(), "{result:?}"),
        }
    }
    for name in &names[..18] {
        let batch = store
            .read(name, None, ReadLimits::default())
            .await
            .expect("read");
        let text: String = batch
            .records
            .iter()
            .map(|r| String::from_utf8_lossy(&r.data).into_owned())
            .collect();
        assert_eq!(text, format!("{name}:0;{name}:1;{name}:2;"));
        assert_eq!(
            batch.next_offset,
            store.head(name).await.expect("head").next_offset
        );
    }
}

/// A wait on `store` for data after `after`, with a 30 s timeout, in a task.
fn spawn_wait(
    store: &SqliteStreamStorage,
    name: &StreamName,
    after: Offset,
) -> tokio::task::JoinHandle<Result<WaitOutcome, StorageError>> {
    let (store, name) = (store.clone(), name.clone());
    tokio::spawn(async move { store.wait(&name, &after, Duration::from_secs(30)).await })
}

/// Gives `waiter` `window` to return wrongly, then asserts it is still waiting, so what the
/// test does next wakes a pending wait. (Whether it has subscribed is not observable from
/// outside; the window is how long a wrong early return gets to show.)
async fn assert_still_waiting(
    waiter: &tokio::task::JoinHandle<Result<WaitOutcome, StorageError>>,
    window: Duration,
) {
    tokio::time::sleep(window).await;
    assert!(
        !waiter.is_finished(),
        "the wait returned before anything happened"
    );
}

/// The waiter's result, which must come within 1 s (a 30th of its timeout).
async fn within_a_second(
    what: &str,
    waiter: tokio::task::JoinHandle<Result<WaitOutcome, StorageError>>,
) -> Result<WaitOutcome, StorageError> {
    tokio::time::timeout(Duration::from_secs(1), waiter)
        .await
        .unwrap_or_else(|_| panic!("{what}: not woken within 1 s (wait timeout 30 s)"))
        .expect("task")
}

/// Two instances opened separately on the file at `path`.
async fn two_instances(path: &std::path::Path) -> (SqliteStreamStorage, SqliteStreamStorage) {
    let a = SqliteStreamStorage::connect(path, SqliteStorageConfig::default())
        .await
        .expect("open a");
    let b = SqliteStreamStorage::connect(path, SqliteStorageConfig::default())
        .await
        .expect("open b");
    (a, b)
}

/// Instances opened separately on one file (each with its own in-process wake-ups, like two
/// processes): an append, a close and a delete through one end a wait on the other within 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_through_another_instance_wake_a_wait() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = two_instances(&dir.path().join("s.db")).await;
    let name = StreamName::new("cross").expect("valid");
    let config = || StreamConfig::with_content_type("text/plain");
    a.create(&name, config(), vec![]).await.expect("create");

    // The wait is asleep before the append.
    let waiter = spawn_wait(&a, &name, a.head(&name).await.expect("head").next_offset);
    assert_still_waiting(&waiter, Duration::from_millis(200)).await;
    b.append(&name, AppendRequest::record("one"))
        .await
        .expect("append");
    let outcome = within_a_second("append through b", waiter).await;
    assert_eq!(outcome.expect("wait"), WaitOutcome::Ready);

    // The append races the wait's start.
    let waiter = spawn_wait(&a, &name, a.head(&name).await.expect("head").next_offset);
    b.append(&name, AppendRequest::record("two"))
        .await
        .expect("append");
    let outcome = within_a_second("append racing the wait", waiter).await;
    assert_eq!(outcome.expect("wait"), WaitOutcome::Ready);

    let waiter = spawn_wait(&a, &name, a.head(&name).await.expect("head").next_offset);
    assert_still_waiting(&waiter, Duration::from_millis(100)).await;
    b.append(&name, AppendRequest::close_only())
        .await
        .expect("close");
    let outcome = within_a_second("close through b", waiter).await;
    assert_eq!(outcome.expect("wait"), WaitOutcome::Closed);

    let other = StreamName::new("deleted").expect("valid");
    a.create(&other, config(), vec![]).await.expect("create");
    let waiter = spawn_wait(&a, &other, a.head(&other).await.expect("head").next_offset);
    assert_still_waiting(&waiter, Duration::from_millis(100)).await;
    b.delete(&other).await.expect("delete");
    let outcome = within_a_second("delete through b", waiter).await;
    assert!(
        matches!(outcome, Err(StorageError::NotFound { .. })),
        "{outcome:?}"
    );
}

/// An append queued while another connection holds the file's write lock judges expiry at the
/// time it gets the lock: a TTL that ran out during the wait means the stream is gone, not
/// revived by the append (which read the clock before waiting, until this was fixed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_judges_expiry_once_it_holds_the_write_lock() {
    use courier::storage::Expiry;

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("s.db");
    let clock = ManualClock::starting_now();
    let storage = SqliteStreamStorage::connect(
        &path,
        SqliteStorageConfig::default().with_clock(clock.shared()),
    )
    .await
    .expect("open");
    let name = StreamName::new("short-lived").expect("valid");
    let config = StreamConfig {
        expiry: Expiry::Ttl(Duration::from_secs(2)),
        ..StreamConfig::with_content_type("text/plain")
    };
    storage.create(&name, config, vec![]).await.expect("create");

    // Another writer (a second instance, or any SQLite client) holds the write lock.
    let holder = rusqlite::Connection::open(&path).expect("raw connection");
    holder
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let append = tokio::spawn({
        let storage = storage.clone();
        let name = name.clone();
        async move { storage.append(&name, AppendRequest::record("late")).await }
    });
    // Whether the writer has reached BEGIN IMMEDIATE cannot be observed from here; 200 ms is
    // ample for it to take the job and block on the lock (the busy timeout is 10 s).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!append.is_finished(), "the append waits for the lock");
    clock.advance(Duration::from_secs(3));
    holder.execute_batch("COMMIT").expect("release the lock");

    let outcome = tokio::time::timeout(Duration::from_secs(10), append)
        .await
        .expect("the append finishes once the lock is free")
        .expect("append task");
    assert!(
        matches!(outcome, Err(StorageError::NotFound { .. })),
        "the stream expired while the append waited: {outcome:?}"
    );
}

/// Set in the child process of [`append_in_another_process_wakes_a_wait`]: the database file
/// to append to.
const CHILD_APPEND_ENV: &str = "COURIER_TEST_SQLITE_CHILD_APPEND";

/// Two real processes on one file: an append made by a child process wakes a wait here within
/// 1 s of the child's exit (the wait's timeout is 30 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_in_another_process_wakes_a_wait() {
    let name = StreamName::new("processes").expect("valid");
    if let Ok(path) = std::env::var(CHILD_APPEND_ENV) {
        // The child: append once and exit.
        let store = SqliteStreamStorage::connect(&path, SqliteStorageConfig::default())
            .await
            .expect("child open");
        store
            .append(&name, AppendRequest::record("from the child"))
            .await
            .expect("child append");
        store.close().await;
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("s.db");
    let store = SqliteStreamStorage::connect(&path, SqliteStorageConfig::default())
        .await
        .expect("open");
    let tail = create_tail(&store, &name).await;
    let waiter = spawn_wait(&store, &name, tail);
    let exe = std::env::current_exe().expect("test binary");
    let child = tokio::task::spawn_blocking(move || {
        std::process::Command::new(exe)
            .args(["--exact", "append_in_another_process_wakes_a_wait"])
            .env(CHILD_APPEND_ENV, &path)
            .output()
    });
    let output = tokio::time::timeout(Duration::from_secs(20), child)
        .await
        .expect("the child finishes within 20 s")
        .expect("task")
        .expect("run the child");
    assert!(
        output.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let outcome = within_a_second("append in another process", waiter).await;
    assert_eq!(outcome.expect("wait"), WaitOutcome::Ready);
    let batch = store
        .read(&name, None, ReadLimits::default())
        .await
        .expect("read");
    assert_eq!(&batch.records[0].data[..], b"from the child");
}

/// Dedup keys of keyed appends are durable: after closing and reopening the file, a retry of
/// a committed key is still a duplicate answering the original tag.
#[tokio::test]
async fn dedup_keys_survive_reopen() {
    use courier::storage::{KeyedOutcome, KeyedRecord};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("streams.db");
    let name = StreamName::new("keyed").expect("valid");
    let window = Duration::from_secs(3600);
    let keyed = |key: &str, tag: &str| KeyedRecord::new(key, tag, tag.to_owned()).expect("valid");
    {
        let store = SqliteStreamStorage::connect(&path, SqliteStorageConfig::default())
            .await
            .expect("open");
        store
            .create(&name, StreamConfig::with_content_type("text/plain"), vec![])
            .await
            .expect("create");
        let outcomes = store
            .append_keyed(&name, vec![keyed("a", "a1")], window)
            .await
            .expect("keyed append");
        assert!(matches!(outcomes[..], [KeyedOutcome::Appended { .. }]));
        store.close().await;
    }
    let store = SqliteStreamStorage::connect(&path, SqliteStorageConfig::default())
        .await
        .expect("reopen");
    let outcomes = store
        .append_keyed(&name, vec![keyed("a", "a2"), keyed("b", "b2")], window)
        .await
        .expect("keyed append after reopen");
    assert_eq!(outcomes[0], KeyedOutcome::Duplicate { tag: "a1".into() });
    assert!(matches!(outcomes[1], KeyedOutcome::Appended { .. }));
}

/// Two instances on one file, like two processes: what one commits is read at once through
/// the other, even right after the other cached the stream's tail by appending to it itself
/// (its in-memory recent records must not answer for commits it did not make).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_see_commits_made_through_another_instance() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = two_instances(&dir.path().join("s.db")).await;
    let config = || StreamConfig::with_content_type("text/plain");
    let x = StreamName::new("x").expect("valid");
    let y = StreamName::new("y").expect("valid");
    a.create(&x, config(), vec![]).await.expect("create x");
    a.create(&y, config(), vec![]).await.expect("create y");
    let datas = |batch: &courier::storage::ReadBatch| -> Vec<String> {
        batch
            .records
            .iter()
            .map(|r| String::from_utf8_lossy(&r.data).into_owned())
            .collect()
    };

    // a appends (so it holds x's tail in memory), then b appends to x.
    a.append(&x, AppendRequest::record("a1")).await.expect("a1");
    let tail = a.head(&x).await.expect("head").next_offset;
    b.append(&x, AppendRequest::record("b1")).await.expect("b1");
    let batch = a.read(&x, Some(tail), ReadLimits::default()).await;
    assert_eq!(datas(&batch.expect("read")), ["b1"]);
    let all = a.read(&x, None, ReadLimits::default()).await.expect("read");
    assert_eq!(datas(&all), ["a1", "b1"]);

    // a's next commit is to another stream: x's entry from before b's append must not be
    // trusted again with it.
    a.append(&x, AppendRequest::record("a2")).await.expect("a2");
    b.append(&x, AppendRequest::record("b2")).await.expect("b2");
    a.append(&y, AppendRequest::record("y1")).await.expect("y1");
    let all = a.read(&x, None, ReadLimits::default()).await.expect("read");
    assert_eq!(datas(&all), ["a1", "b1", "a2", "b2"]);
    assert!(all.up_to_date);
    assert_eq!(a.head(&x).await.expect("head").next_offset, all.next_offset);

    // Close and delete through b are seen through a at once.
    a.append(&x, AppendRequest::record("a3")).await.expect("a3");
    b.append(&x, AppendRequest::close_only())
        .await
        .expect("close");
    assert!(a.head(&x).await.expect("head").closed);
    a.append(&y, AppendRequest::record("y2")).await.expect("y2");
    b.delete(&y).await.expect("delete");
    let gone = a.read(&y, None, ReadLimits::default()).await;
    assert!(
        matches!(gone, Err(StorageError::NotFound { .. })),
        "{gone:?}"
    );

    // Both keep appending to one stream: each sees every record, in one order.
    let z = StreamName::new("z").expect("valid");
    a.create(&z, config(), vec![]).await.expect("create z");
    for i in 0..20 {
        let (writer, reader) = if i % 3 == 0 { (&b, &a) } else { (&a, &b) };
        writer
            .append(&z, AppendRequest::record(format!("{i}")))
            .await
            .expect("append");
        let seen = reader.read(&z, None, ReadLimits::default()).await;
        assert_eq!(seen.expect("read").records.len(), i + 1, "after append {i}");
    }
    let through_a = datas(&a.read(&z, None, ReadLimits::default()).await.expect("a"));
    let through_b = datas(&b.read(&z, None, ReadLimits::default()).await.expect("b"));
    assert_eq!(through_a, through_b);
}

/// With room for only a few records per stream in memory, reads spanning the evicted and the
/// kept records, across many streams, return every record once and in order.
#[tokio::test]
async fn reads_across_the_memory_bound_return_every_record_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = SqliteStorageConfig::default().with_recent_bytes(16 << 10);
    let store = SqliteStreamStorage::connect(dir.path().join("s.db"), config)
        .await
        .expect("open");
    let names: Vec<StreamName> = (0..8)
        .map(|i| StreamName::new(&format!("s{i}")).expect("valid"))
        .collect();
    for name in &names {
        store
            .create(name, StreamConfig::with_content_type("text/plain"), vec![])
            .await
            .expect("create");
    }
    for round in 0..100 {
        for name in &names {
            let records = (0..3).map(|k| format!("{round}-{k}-{}", "x".repeat(90)));
            store
                .append(
                    name,
                    AppendRequest::records(records.map(Into::into).collect()),
                )
                .await
                .expect("append");
        }
    }
    for name in &names {
        let mut from = None;
        let mut seen = Vec::new();
        loop {
            let limits = ReadLimits {
                max_records: 37,
                max_bytes: usize::MAX,
            };
            let batch = store.read(name, from, limits).await.expect("read");
            seen.extend(batch.records.iter().map(|r| r.data.clone()));
            from = Some(batch.next_offset.clone());
            if batch.up_to_date {
                break;
            }
        }
        let expected: Vec<String> = (0..100)
            .flat_map(|round| (0..3).map(move |k| format!("{round}-{k}-{}", "x".repeat(90))))
            .collect();
        assert_eq!(seen.len(), expected.len(), "{name}");
        for (got, want) in seen.iter().zip(&expected) {
            assert_eq!(&got[..], want.as_bytes(), "{name}");
        }
    }
}
