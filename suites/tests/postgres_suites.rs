//! The universal storage suite against `PgStreamStorage` on a real Postgres from the testkit,
//! including the restart and multi-node cases, plus concurrent creates.

use std::sync::Arc;

use async_trait::async_trait;
use courier::impls::postgres::{
    KEYED_LOOKUP_SQL, PgBus, PgBusConfig, PgStorageConfig, PgStreamStorage,
};
use courier::storage::{
    CreateOutcome, KeyedOutcome, KeyedRecord, StreamConfig, StreamName, StreamStorage,
};
use courier::traits::clock::ManualClock;
use courier_testkit::fixtures::{Postgres, SharedFixture, unique_prefix};
use courier_testkit::suites::storage::create_tail;
use courier_testkit::suites::storage_races::append_at_once;
use courier_testkit::suites::{BusFactory, StorageFactory};

/// A fresh database on the run's shared Postgres (a private server in the restart cases);
/// every `connect` is a new storage (a node) on the same schema.
struct PgFactory {
    postgres: SharedFixture<Postgres>,
    url: String,
    schema: String,
    /// What the storages decide expiry against.
    clock: ManualClock,
}

impl PgFactory {
    async fn start() -> PgFactory {
        let postgres = Postgres::shared().await.expect("postgres starts");
        let url = postgres.url();
        PgFactory {
            postgres: SharedFixture::new(postgres),
            url,
            schema: unique_prefix(),
            clock: ManualClock::starting_now(),
        }
    }
}

#[async_trait]
impl StorageFactory for PgFactory {
    type Storage = PgStreamStorage;
    async fn connect(&self) -> PgStreamStorage {
        let config = PgStorageConfig::default()
            .with_schema(self.schema.clone())
            .with_clock(self.clock.shared());
        PgStreamStorage::connect(&self.url, config)
            .await
            .expect("connect to postgres")
    }
    fn clock(&self) -> Option<ManualClock> {
        Some(self.clock.clone())
    }
    async fn stop_server(&self) -> Result<(), String> {
        self.postgres.stop().await
    }
    async fn start_server(&self) -> Result<(), String> {
        self.postgres.start().await
    }
}

mod postgres_storage {
    use super::*;

    courier_testkit::storage_suite!(
        factory = PgFactory::start().await,
        durable = true,
        shared = true,
        ttl = true,
        producers = true,
        forks = true,
        survives_restart = true,
        keyed_append = true,
    );
}

#[async_trait]
impl BusFactory for PgFactory {
    type Bus = PgBus;
    async fn connect(&self) -> PgBus {
        PgBus::connect(&self.url, PgBusConfig::default())
            .await
            .expect("connect to postgres")
    }
    async fn stop_server(&self) -> Result<(), String> {
        self.postgres.stop().await
    }
    async fn start_server(&self) -> Result<(), String> {
        self.postgres.start().await
    }
}

mod postgres_bus {
    use super::*;

    courier_testkit::bus_suite!(
        factory = PgFactory::start().await,
        persistent = true,
        resume = true,
        ordered = true,
        exactly_once = true,
        lag_reporting = true,
        shared = true,
        survives_restart = true,
    );
}

/// Nodes racing to create one stream: exactly one `Created`, the rest `AlreadyExists`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_from_several_nodes_create_once() {
    let factory = PgFactory::start().await;
    let name = StreamName::new("raced").expect("valid");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let node = Arc::new(StorageFactory::connect(&factory).await);
        let name = name.clone();
        tasks.push(tokio::spawn(async move {
            node.create(&name, StreamConfig::with_content_type("text/plain"), vec![])
                .await
        }));
    }
    let mut created = 0;
    for task in tasks {
        match task.await.expect("task").expect("create") {
            CreateOutcome::Created(_) => created += 1,
            CreateOutcome::AlreadyExists(_) => {}
        }
    }
    assert_eq!(created, 1);
}

/// A stream the planner's statistics have not seen yet (created after the last ANALYZE) must
/// not make its keyed appends scan all of its keys: the lookup reaches the primary key by the
/// looked-up keys. With the schema before step 3 this plan was an index scan on the stream
/// alone with the keys as a filter, removing every key of the stream per call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_lookups_probe_their_keys_even_on_a_stream_new_to_the_statistics() {
    let factory = PgFactory::start().await;
    let storage = StorageFactory::connect(&factory).await;
    let config = || StreamConfig::with_content_type("application/json");
    let fill = |stream: StreamName, prefix: &'static str| {
        let storage = &storage;
        async move {
            storage
                .create(&stream, config(), vec![])
                .await
                .expect("create");
            for batch in 0..10 {
                let records = (0..500)
                    .map(|i| KeyedRecord {
                        key: format!("{prefix}-{batch}-{i}"),
                        tag: format!("t{i}"),
                        data: bytes::Bytes::from_static(b"{}"),
                    })
                    .collect();
                storage
                    .append_keyed(&stream, records, std::time::Duration::from_secs(3600))
                    .await
                    .expect("append_keyed");
            }
        }
    };
    fill(StreamName::new("seen").expect("name"), "seen").await;
    let schema = format!("\"{}\"", factory.schema);
    factory
        .postgres
        .lock()
        .await
        .query(&format!("ANALYZE {schema}.courier_dedup_keys"))
        .await
        .expect("analyze");
    fill(StreamName::new("unseen").expect("name"), "unseen").await;
    let plan = factory
        .postgres
        .lock()
        .await
        .query(&format!(
            "SET search_path TO {schema}; PREPARE lookup(text, bigint, text[]) AS {KEYED_LOOKUP_SQL}; \
             EXPLAIN (ANALYZE, COSTS OFF) EXECUTE lookup('unseen', 0, ARRAY['unseen-3-7', 'nope'])"
        ))
        .await
        .expect("explain");
    let plan: Vec<String> = plan.into_iter().flatten().flatten().collect();
    let plan = plan.join("\n");
    assert!(
        plan.contains("courier_dedup_keys_pkey") && plan.contains("Index Cond: ((key = ANY"),
        "{plan}"
    );
    assert!(!plan.contains("Rows Removed by Filter"), "{plan}");
}

/// A database that schema step 2 made (primary key `(stream, key)`, index `(stream,
/// committed_ms)`) and that holds keyed records migrates to step 3 on connect, and its existing
/// keys keep deduplicating: a repeat of an old key inside the window answers `Duplicate` with
/// the tag that committed it, per stream, and once the window has passed it is written again.
///
/// The records are written by today's code into a scratch schema and copied into a schema laid
/// out as step 2 left it: the rows of every table are the same at steps 2 and 3, only the
/// dedup table's keys and index differ, so that table is built here as step 2 built it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_2_database_with_keyed_records_migrates_and_keeps_deduplicating_them() {
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);
    const OLD_KEYS: usize = 100;
    let factory = PgFactory::start().await;
    let scratch = format!("{}_scratch", factory.schema);
    let writer = PgStreamStorage::connect(
        &factory.url,
        PgStorageConfig::default()
            .with_schema(scratch.clone())
            .with_clock(factory.clock.shared()),
    )
    .await
    .expect("connect the scratch schema");
    let keyed = |key: String, tag: String| KeyedRecord::new(key, tag.clone(), tag).expect("valid");
    let events = StreamName::new("ingest/app-1").expect("name");
    let other = StreamName::new("ingest/app-2").expect("name");
    for (stream, tag_prefix) in [(&events, "t"), (&other, "other-t")] {
        writer
            .create(
                stream,
                StreamConfig::with_content_type("application/json"),
                vec![],
            )
            .await
            .expect("create");
        let records = (0..OLD_KEYS)
            .map(|i| keyed(format!("k{i}"), format!("{tag_prefix}{i}")))
            .collect();
        let outcomes = writer
            .append_keyed(stream, records, WINDOW)
            .await
            .expect("append_keyed");
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, KeyedOutcome::Appended { .. }))
        );
    }
    drop(writer);

    let (old, scratch) = (format!("\"{}\"", factory.schema), format!("\"{scratch}\""));
    let copy = |table: &str| {
        format!(
            "CREATE TABLE {old}.{table} (LIKE {scratch}.{table} INCLUDING ALL);
             INSERT INTO {old}.{table} SELECT * FROM {scratch}.{table};"
        )
    };
    factory
        .postgres
        .lock()
        .await
        .query(&format!(
            "CREATE SCHEMA {old};
             {streams} {records} {producers}
             CREATE TABLE {old}.courier_dedup_keys (
                 stream TEXT NOT NULL,
                 key TEXT NOT NULL,
                 tag TEXT NOT NULL,
                 committed_ms BIGINT NOT NULL,
                 PRIMARY KEY (stream, key)
             );
             CREATE INDEX courier_dedup_keys_age ON {old}.courier_dedup_keys (stream, committed_ms);
             INSERT INTO {old}.courier_dedup_keys (stream, key, tag, committed_ms)
                 SELECT stream, key, tag, committed_ms FROM {scratch}.courier_dedup_keys;
             CREATE TABLE {old}.courier_schema_version (version BIGINT NOT NULL);
             INSERT INTO {old}.courier_schema_version (version) VALUES (1), (2);
             DROP SCHEMA {scratch} CASCADE;",
            streams = copy("courier_streams"),
            records = copy("courier_records"),
            producers = copy("courier_producers"),
        ))
        .await
        .expect("a step 2 schema with keyed records");

    // Connecting migrates.
    let storage = StorageFactory::connect(&factory).await;
    let layout = factory
        .postgres
        .lock()
        .await
        .query(&format!(
            "SELECT (SELECT max(version) FROM {old}.courier_schema_version)::text,
                    (SELECT count(*) FROM {old}.courier_dedup_keys)::text,
                    string_agg(indexdef, ' | ' ORDER BY indexname)
               FROM pg_indexes
              WHERE schemaname = '{}' AND tablename = 'courier_dedup_keys'",
            factory.schema
        ))
        .await
        .expect("layout");
    let layout: Vec<String> = layout.into_iter().flatten().flatten().collect();
    assert_eq!(layout[0], "3", "{layout:?}");
    assert_eq!(layout[1], (2 * OLD_KEYS).to_string(), "{layout:?}");
    assert!(
        layout[2].contains("UNIQUE INDEX courier_dedup_keys_pkey ON")
            && layout[2].contains("(key, stream)"),
        "{layout:?}"
    );
    assert!(
        layout[2].contains(r#"(stream COLLATE "C", committed_ms)"#),
        "{layout:?}"
    );
    assert!(!layout[2].contains("courier_dedup_keys_age"), "{layout:?}");

    // Old keys inside the window: duplicates with the tags that committed them, per stream;
    // a new key is written, and a repeat inside the call is a duplicate of it.
    let duplicate = |tag: &str| KeyedOutcome::Duplicate { tag: tag.into() };
    let outcomes = storage
        .append_keyed(
            &events,
            vec![
                keyed("k5".into(), "retry-5".into()),
                keyed("new".into(), "new".into()),
                keyed("k99".into(), "retry-99".into()),
                keyed("new".into(), "new-again".into()),
            ],
            WINDOW,
        )
        .await
        .expect("append_keyed after the migration");
    assert_eq!(outcomes[0], duplicate("t5"));
    assert!(matches!(outcomes[1], KeyedOutcome::Appended { .. }));
    assert_eq!(outcomes[2], duplicate("t99"));
    assert_eq!(outcomes[3], duplicate("new"));
    let outcomes = storage
        .append_keyed(&other, vec![keyed("k5".into(), "retry".into())], WINDOW)
        .await
        .expect("append_keyed to the other stream");
    assert_eq!(outcomes, [duplicate("other-t5")]);
    let read = storage
        .read(&events, None, courier::storage::ReadLimits::default())
        .await
        .expect("read");
    let tags: Vec<&[u8]> = read.records.iter().map(|r| &r.data[..]).collect();
    assert_eq!(tags.len(), OLD_KEYS + 1, "the old records and the new one");
    assert_eq!((tags[5], tags[OLD_KEYS]), (&b"t5"[..], &b"new"[..]));

    // Past the window the old keys expire through the new index: written again.
    factory
        .clock
        .advance(WINDOW + std::time::Duration::from_secs(1));
    let outcomes = storage
        .append_keyed(&events, vec![keyed("k5".into(), "later".into())], WINDOW)
        .await
        .expect("append_keyed after the window");
    assert!(
        matches!(outcomes[..], [KeyedOutcome::Appended { .. }]),
        "{outcomes:?}"
    );
}

/// Concurrent appends to one stream on one node commit as batches (one transaction each), not
/// one transaction per append: the 64 records of 64 appends at once were inserted by far fewer
/// transactions (distinct `xmin`) than 64, and each append has its own offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_to_one_stream_are_batched() {
    let factory = PgFactory::start().await;
    let storage = StorageFactory::connect(&factory).await;
    let name = StreamName::new("batched").expect("valid");
    storage
        .create(&name, StreamConfig::with_content_type("text/plain"), vec![])
        .await
        .expect("create");
    let offsets = append_at_once(&storage, &name, 64).await;
    assert_eq!(offsets.len(), 64, "every append has its own offset");
    let transactions = inserting_transactions(&factory, "batched").await;
    assert!(
        transactions <= 32,
        "64 concurrent appends took {transactions} transactions: they are not batched"
    );
}

/// The distinct transactions (`xmin`) that inserted the records of the streams whose names
/// start with `prefix`, in `factory`'s schema.
async fn inserting_transactions(factory: &PgFactory, prefix: &str) -> u64 {
    let found = factory
        .postgres
        .lock()
        .await
        .query(&format!(
            "SELECT count(DISTINCT xmin::text) FROM \"{}\".courier_records WHERE stream LIKE '{prefix}%'",
            factory.schema
        ))
        .await
        .expect("count transactions");
    found
        .into_iter()
        .flatten()
        .flatten()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a count")
}

/// Appends to many streams at once from one node share transactions (a commit carries the
/// streams that became ready while others were in flight), and each still gets its own offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_to_many_streams_share_transactions() {
    use courier::storage::AppendRequest;

    const STREAMS: usize = 64;
    let factory = PgFactory::start().await;
    let storage = StorageFactory::connect(&factory).await;
    let names: Vec<StreamName> = (0..STREAMS)
        .map(|i| StreamName::new(&format!("spread-{i}")).expect("valid"))
        .collect();
    for name in &names {
        create_tail(&storage, name).await;
    }
    let appends = names.iter().map(|name| {
        let (storage, name) = (storage.clone(), name.clone());
        tokio::spawn(async move { storage.append(&name, AppendRequest::record("x")).await })
    });
    for append in futures::future::join_all(appends).await {
        let outcome = append.expect("task").expect("append");
        assert!(outcome.first_offset.is_some(), "a record was written");
    }
    let transactions = inserting_transactions(&factory, "spread-").await;
    assert!(
        transactions <= STREAMS as u64 / 4,
        "{STREAMS} appends to {STREAMS} streams at once took {transactions} transactions: \
         streams do not share them"
    );
}

/// In one shared commit, each stream is decided on its own: a closed, a missing, a deleted
/// (forked, so gone) and an expired stream refuse their appends, a producer's retry is a
/// duplicate and its next sequence is written, and the open streams beside them append.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_commit_decides_each_stream_on_its_own() {
    use std::time::Duration;

    use courier::storage::{
        AppendOutcome, AppendRequest, Expiry, ForkFrom, ProducerStamp, ReadLimits, StorageError,
    };

    const OPEN: usize = 40;
    let factory = PgFactory::start().await;
    let storage = StorageFactory::connect(&factory).await;
    let name = |n: &str| StreamName::new(n).expect("valid");
    let plain = StreamConfig::with_content_type("text/plain");
    let open: Vec<StreamName> = (0..OPEN).map(|i| name(&format!("mixed-{i}"))).collect();
    for stream in &open {
        create_tail(&storage, stream).await;
    }
    storage
        .create(&name("closed"), plain.clone(), vec![])
        .await
        .expect("create");
    storage
        .append(&name("closed"), AppendRequest::close_only())
        .await
        .expect("close");
    storage
        .create(&name("parent"), plain.clone(), vec![])
        .await
        .expect("create");
    let fork = StreamConfig {
        fork: Some(ForkFrom {
            source: name("parent"),
            offset: None,
            sub_offset: Default::default(),
        }),
        ..plain.clone()
    };
    storage
        .create(&name("child"), fork, vec![])
        .await
        .expect("fork");
    storage.delete(&name("parent")).await.expect("delete");
    let ttl = StreamConfig {
        expiry: Expiry::Ttl(Duration::from_secs(10)),
        ..plain.clone()
    };
    storage
        .create(&name("expiring"), ttl, vec![])
        .await
        .expect("create");
    storage
        .create(&name("mixed-stamped"), plain, vec![])
        .await
        .expect("create");
    let stamp = |seq| ProducerStamp::new("p", 0, seq).expect("stamp");
    storage
        .append(
            &name("mixed-stamped"),
            AppendRequest::record("a").with_producer(stamp(0)),
        )
        .await
        .expect("first stamped append");
    factory.clock.advance(Duration::from_secs(60));

    // The refused streams sit among the open ones, all sent at once.
    let mut requests: Vec<(StreamName, AppendRequest)> = Vec::new();
    for (i, stream) in open.iter().enumerate() {
        requests.push((stream.clone(), AppendRequest::record("x")));
        match i {
            8 => requests.push((name("closed"), AppendRequest::record("x"))),
            16 => requests.push((name("missing"), AppendRequest::record("x"))),
            24 => requests.push((name("parent"), AppendRequest::record("x"))),
            28 => requests.push((name("expiring"), AppendRequest::record("x"))),
            32 => {
                let retry = AppendRequest::record("a").with_producer(stamp(0));
                requests.push((name("mixed-stamped"), retry));
                let next = AppendRequest::record("b").with_producer(stamp(1));
                requests.push((name("mixed-stamped"), next));
            }
            _ => {}
        }
    }
    let outcomes: Vec<Result<AppendOutcome, StorageError>> = futures::future::join_all(
        requests
            .iter()
            .map(|(stream, request)| storage.append(stream, request.clone())),
    )
    .await;
    for ((stream, request), outcome) in requests.iter().zip(outcomes) {
        match stream.as_str() {
            "closed" => assert!(
                matches!(outcome, Err(StorageError::Closed { .. })),
                "closed: {outcome:?}"
            ),
            "missing" | "expiring" => assert!(
                matches!(outcome, Err(StorageError::NotFound { .. })),
                "{stream}: {outcome:?}"
            ),
            "parent" => assert!(
                matches!(outcome, Err(StorageError::Gone { .. })),
                "parent: {outcome:?}"
            ),
            "mixed-stamped" => {
                let outcome = outcome.expect("stamped append");
                let seq = request.producer.as_ref().expect("stamped").seq;
                assert_eq!(outcome.duplicate, seq == 0, "seq {seq}: {outcome:?}");
            }
            _ => {
                outcome.expect("an open stream appends");
            }
        }
    }
    let transactions = inserting_transactions(&factory, "mixed-").await;
    assert!(
        transactions <= (OPEN as u64 + 2) / 4,
        "the appends took {transactions} transactions: streams do not share them"
    );
    // What was written: one record per open stream, the producer's two, nothing elsewhere.
    let read = |stream: StreamName| {
        let storage = storage.clone();
        async move {
            storage
                .read(&stream, None, ReadLimits::default())
                .await
                .map(|batch| batch.records.len())
        }
    };
    for stream in &open {
        assert_eq!(read(stream.clone()).await.expect("read"), 1, "{stream}");
    }
    assert_eq!(read(name("mixed-stamped")).await.expect("read"), 2);
    assert_eq!(read(name("closed")).await.expect("read"), 0);
    assert!(matches!(
        read(name("missing")).await,
        Err(StorageError::NotFound { .. })
    ));
    assert!(matches!(
        read(name("expiring")).await,
        Err(StorageError::NotFound { .. })
    ));
}

/// Two nodes append to the same streams at the same moment, one in the other's reverse order:
/// their shared commits skip the rows the other holds (and commit those streams on their own
/// after), so neither deadlocks (Postgres would abort one), and every append is written once
/// with its own offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_sharing_commits_over_the_same_streams_do_not_deadlock() {
    use courier::storage::{AppendRequest, ReadLimits};

    const STREAMS: usize = 32;
    const ROUNDS: usize = 5;
    let factory = PgFactory::start().await;
    let (one, two) = (
        StorageFactory::connect(&factory).await,
        StorageFactory::connect(&factory).await,
    );
    let names: Vec<StreamName> = (0..STREAMS)
        .map(|i| StreamName::new(&format!("crossed-{i}")).expect("valid"))
        .collect();
    for name in &names {
        create_tail(&one, name).await;
    }
    for round in 0..ROUNDS {
        let forward = names
            .iter()
            .map(|name| one.append(name, AppendRequest::record("1")));
        let backward = names
            .iter()
            .rev()
            .map(|name| two.append(name, AppendRequest::record("2")));
        let (forward, backward) = tokio::join!(
            futures::future::join_all(forward),
            futures::future::join_all(backward)
        );
        for outcome in forward.into_iter().chain(backward) {
            outcome.unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
    }
    for name in &names {
        let batch = one
            .read(name, None, ReadLimits::default())
            .await
            .expect("read");
        assert_eq!(batch.records.len(), 2 * ROUNDS, "{name}");
        let ones = batch.records.iter().filter(|r| &r.data[..] == b"1").count();
        assert_eq!(ones, ROUNDS, "{name}: each node's appends once");
    }
}

/// A delete of a fork (which locks the fork's row, then its source's to count it out) races
/// appends from another node to both streams and many others, in one shared commit: no append
/// fails for a deadlock or a lock held elsewhere (each is written, or refused because its fork
/// is gone), and every delete succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_fork_while_another_node_appends_to_it_and_its_source_deadlocks_nothing() {
    use courier::storage::{AppendRequest, ForkFrom, StorageError};

    const OTHERS: usize = 24;
    const ROUNDS: usize = 12;
    let factory = PgFactory::start().await;
    let (appending, deleting) = (
        StorageFactory::connect(&factory).await,
        StorageFactory::connect(&factory).await,
    );
    let others: Vec<StreamName> = (0..OTHERS)
        .map(|i| StreamName::new(&format!("beside-{i}")).expect("valid"))
        .collect();
    for name in &others {
        create_tail(&appending, name).await;
    }
    for round in 0..ROUNDS {
        let source = StreamName::new(&format!("chat-{round}")).expect("valid");
        let fork = StreamName::new(&format!("chat-{round}-fork")).expect("valid");
        create_tail(&appending, &source).await;
        let config = StreamConfig {
            fork: Some(ForkFrom {
                source: source.clone(),
                offset: None,
                sub_offset: Default::default(),
            }),
            ..StreamConfig::with_content_type("text/plain")
        };
        appending.create(&fork, config, vec![]).await.expect("fork");
        let mut names = vec![source.clone(), fork.clone()];
        names.extend(others.iter().cloned());
        let appends = futures::future::join_all(
            names
                .iter()
                .map(|name| appending.append(name, AppendRequest::record("x"))),
        );
        let (appended, deleted) = tokio::join!(appends, deleting.delete(&fork));
        deleted.unwrap_or_else(|e| panic!("round {round}: delete: {e}"));
        for (name, outcome) in names.iter().zip(appended) {
            match outcome {
                Ok(_) => {}
                Err(StorageError::NotFound { .. }) if name == &fork => {}
                Err(error) => panic!("round {round}: append to {name}: {error}"),
            }
        }
    }
}

/// Appends to many streams at once on one node wake every wait on another node: the
/// notifications, sent after the commits and several streams to a transaction, lose none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_to_many_streams_at_once_wake_every_wait_on_another_node() {
    use std::time::Duration;

    use courier::storage::{AppendRequest, WaitOutcome};

    const STREAMS: usize = 64;
    let factory = PgFactory::start().await;
    let (waiting, appending) = (
        StorageFactory::connect(&factory).await,
        StorageFactory::connect(&factory).await,
    );
    let mut waits = Vec::new();
    for i in 0..STREAMS {
        let name = StreamName::new(&format!("woken-{i}")).expect("valid");
        let tail = create_tail(&appending, &name).await;
        let waiting = waiting.clone();
        waits.push(tokio::spawn(async move {
            waiting.wait(&name, &tail, Duration::from_secs(20)).await
        }));
    }
    // A wait subscribes before it reads the row, so one that starts after its append has
    // committed returns at once; the others (most: each was spawned during the creates) need
    // the notification.
    let appends = (0..STREAMS).map(|i| {
        let appending = appending.clone();
        tokio::spawn(async move {
            let name = StreamName::new(&format!("woken-{i}")).expect("valid");
            appending.append(&name, AppendRequest::record("x")).await
        })
    });
    for append in futures::future::join_all(appends).await {
        append.expect("task").expect("append");
    }
    let woken = tokio::time::timeout(Duration::from_secs(10), futures::future::join_all(waits))
        .await
        .expect("every wait returns within 10 s of the appends");
    for (i, wait) in woken.into_iter().enumerate() {
        assert_eq!(
            wait.expect("task").expect("wait"),
            WaitOutcome::Ready,
            "stream woken-{i}"
        );
    }
}

/// A publish on one node reaches a subscriber on another by notification, not by the
/// subscription's once-a-second read: the median of nine publish -> receive times, each
/// publish made once the one before was received, is far below a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_reaches_another_nodes_subscriber_by_notification() {
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use courier::bus::{MessageBus, SubscribeFrom, Topic};
    use futures::StreamExt;

    let factory = PgFactory::start().await;
    let (publishing, subscribing) = (
        BusFactory::connect(&factory).await,
        BusFactory::connect(&factory).await,
    );
    let topic = Topic::new(&format!("{}/notified", unique_prefix())).expect("valid");
    let mut subscription = subscribing
        .subscribe(&topic, SubscribeFrom::Live)
        .await
        .expect("subscribe");
    let mut took = Vec::new();
    for i in 0..9 {
        let payload = Bytes::from(format!("m{i}"));
        let published = Instant::now();
        publishing
            .publish(&topic, payload.clone())
            .await
            .expect("publish");
        let message = tokio::time::timeout(Duration::from_secs(5), subscription.next())
            .await
            .expect("received within 5 s")
            .expect("subscription open")
            .expect("message");
        took.push(published.elapsed());
        assert_eq!(message.payload, payload);
    }
    took.sort();
    eprintln!("publish -> receive across nodes: {took:?}");
    assert!(
        took[4] < Duration::from_millis(250),
        "median publish -> receive across nodes {:?} (all: {took:?}): not woken by notification",
        took[4]
    );
}

/// The notifier's connection is killed (its backend terminated): the next append's
/// notification fails, is sent again on a new connection, and still wakes a wait on another
/// node, long before the wait's own timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_that_fails_is_sent_again_on_a_new_connection() {
    use std::time::Duration;

    use courier::storage::{AppendRequest, WaitOutcome};

    /// The notifier's statement, as `pg_stat_activity` shows its connection's last query.
    const NOTIFIER: &str = "query LIKE '%pg_notify($1, payload)%'";
    let factory = PgFactory::start().await;
    let (waiting, appending) = (
        StorageFactory::connect(&factory).await,
        StorageFactory::connect(&factory).await,
    );
    let name = StreamName::new("renotified").expect("valid");
    create_tail(&appending, &name).await;
    let tail = appending
        .append(&name, AppendRequest::record("one"))
        .await
        .expect("append")
        .next_offset;
    // The appending node's notifier has connected and sent once (the only one that has).
    let in_this_database = "datname = current_database() AND pid <> pg_backend_pid()";
    let mut connected = false;
    for _ in 0..100 {
        let found = factory
            .postgres
            .lock()
            .await
            .query(&format!(
                "SELECT count(*) FROM pg_stat_activity WHERE {in_this_database} AND {NOTIFIER}"
            ))
            .await
            .expect("pg_stat_activity");
        if found.concat() != [Some("0".to_owned())] {
            connected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(connected, "the notifier's connection never showed up");
    let wait = {
        let (waiting, name, tail) = (waiting.clone(), name.clone(), tail.clone());
        tokio::spawn(async move { waiting.wait(&name, &tail, Duration::from_secs(30)).await })
    };
    let terminated = factory
        .postgres
        .lock()
        .await
        .query(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {in_this_database} AND {NOTIFIER}"
        ))
        .await
        .expect("terminate");
    assert_eq!(
        terminated.len(),
        1,
        "one notifier connection: {terminated:?}"
    );
    appending
        .append(&name, AppendRequest::record("two"))
        .await
        .expect("append after the kill");
    let woken = tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .expect("woken within 5 s, not at the wait's 30 s timeout")
        .expect("task")
        .expect("wait");
    assert_eq!(woken, WaitOutcome::Ready);
}

/// A topic keeps at most about `max_len_per_topic` messages: at every thousandth publish the
/// older ones are deleted (after the publish's own commit), and the publishes' sequence
/// numbers stay dense.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_trims_a_topic_to_its_length_every_thousand_publishes() {
    use courier::bus::{MessageBus, Topic};

    let factory = PgFactory::start().await;
    let bus = PgBus::connect(
        &factory.url,
        PgBusConfig::default().with_max_len_per_topic(10),
    )
    .await
    .expect("connect");
    let topic = Topic::new(&format!("trimmed-{}", unique_prefix())).expect("valid");
    let count = || {
        let (factory, topic) = (&factory, topic.as_str().to_owned());
        async move {
            let rows = factory
                .postgres
                .lock()
                .await
                .query(&format!(
                    "SELECT count(*), min(seq), max(seq) FROM courier_bus_messages WHERE topic = '{topic}'"
                ))
                .await
                .expect("count");
            rows.concat()
                .into_iter()
                .map(|v| v.and_then(|v| v.parse::<i64>().ok()))
                .collect::<Vec<_>>()
        }
    };
    for i in 0..999 {
        bus.publish(&topic, format!("m{i}").into())
            .await
            .expect("publish");
    }
    assert_eq!(
        count().await,
        [Some(999), Some(1), Some(999)],
        "not trimmed yet"
    );
    bus.publish(&topic, "m999".into()).await.expect("publish");
    assert_eq!(
        count().await,
        [Some(10), Some(991), Some(1000)],
        "the thousandth publish keeps the last 10"
    );
}
