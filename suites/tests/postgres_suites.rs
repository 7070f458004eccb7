//! The universal storage suite against `PgStreamStorage` on a real Postgres from the testkit,
//! including the restart and multi-node cases, plus concurrent creates.

use std::sync::Arc;

use async_trait::async_trait;
use courier::impls::postgres::{
    KEYED_LOOKUP_SQL, PgBus, PgBusConfig, PgStorageConfig, PgStreamStorage,
};
use courier::storage::{CreateOutcome, KeyedRecord, StreamConfig, StreamName, StreamStorage};
use courier::traits::clock::ManualClock;
use courier_testkit::fixtures::{Postgres, SharedFixture, unique_prefix};
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
