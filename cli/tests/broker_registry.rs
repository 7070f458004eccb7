//! B8 (registry part): two broker nodes' schema registries on one SQLite file, one Redis and
//! one Postgres (testkit servers): a schema registered through one is read through the other, racing
//! registrations of one new definition make one version, racing new subjects get distinct
//! dense ids, and a topic bound through one node is bound on the other.

use std::sync::Arc;

use courier::impls::{postgres, redis, sqlite};
use courier::traits::storage::StreamStorage;
use courier_broker::schema_registry::{Registration, SchemaRegistry};
use courier_testkit::fixtures::{Postgres, Redis};

async fn open_redis(url: &str) -> SchemaRegistry {
    let storage = redis::RedisStreamStorage::connect(url, redis::RedisStorageConfig::default())
        .await
        .expect("redis");
    let storage: Arc<dyn StreamStorage> = Arc::new(storage);
    SchemaRegistry::open(storage).await.expect("registry")
}

async fn open_postgres(url: &str) -> SchemaRegistry {
    let storage = postgres::PgStreamStorage::connect(url, postgres::PgStorageConfig::default())
        .await
        .expect("postgres");
    let storage: Arc<dyn StreamStorage> = Arc::new(storage);
    SchemaRegistry::open(storage).await.expect("registry")
}

async fn open_sqlite(path: &std::path::Path) -> SchemaRegistry {
    let storage =
        sqlite::SqliteStreamStorage::connect(path, sqlite::SqliteStorageConfig::default())
            .await
            .expect("sqlite");
    let storage: Arc<dyn StreamStorage> = Arc::new(storage);
    SchemaRegistry::open(storage).await.expect("registry")
}

fn registration(subject: &str, definition: &str) -> Registration {
    Registration {
        subject: subject.into(),
        schema_type: "json_schema".into(),
        definition: definition.as_bytes().to_vec().into(),
        created_by: "b8".into(),
        ..Registration::default()
    }
}

fn user_schema(field: &str) -> String {
    format!(
        r#"{{"type":"object","properties":{{"id":{{"type":"integer"}},"{field}":{{"type":"string"}}}},"required":["id"]}}"#
    )
}

async fn two_nodes_share_the_registry(a: SchemaRegistry, b: SchemaRegistry) {
    let first = a
        .register(registration("users", &user_schema("name")))
        .await
        .expect("register on a");
    assert_eq!(
        (first.schema_id, first.version, first.is_new_version),
        (1, 1, true)
    );
    let (subject, latest) = b.latest("users").await.expect("read on b");
    assert_eq!((subject.schema_id, latest.version), (1, 1));
    assert_eq!(&latest.definition[..], user_schema("name").as_bytes());

    for round in 0..5u32 {
        let definition = user_schema(&format!("f{round}"));
        let (on_a, on_b) = tokio::join!(
            a.register(registration("users", &definition)),
            b.register(registration("users", &definition))
        );
        let (on_a, on_b) = (on_a.expect("a"), on_b.expect("b"));
        assert_eq!(
            (on_a.version, on_b.version),
            (round + 2, round + 2),
            "one version"
        );
        assert!(
            on_a.is_new_version ^ on_b.is_new_version,
            "round {round}: exactly one registration is new: {on_a:?} {on_b:?}"
        );
    }
    let (x, y) = tokio::join!(
        a.register(registration("orders", &user_schema("item"))),
        b.register(registration("payments", &user_schema("amount")))
    );
    let mut ids = vec![x.expect("orders").schema_id, y.expect("payments").schema_id];
    ids.sort_unstable();
    assert_eq!(ids, vec![2, 3], "new subjects get distinct dense ids");

    b.bind_topic("/default/users", "users")
        .await
        .expect("bind on b");
    let refused = a.bind_topic("/default/users", "orders").await;
    assert!(
        refused.is_err(),
        "bound through b, so a refuses another subject"
    );
    let on_a: Vec<u32> = a
        .subject("users")
        .await
        .expect("a")
        .live()
        .map(|v| v.version)
        .collect();
    let on_b: Vec<u32> = b
        .subject("users")
        .await
        .expect("b")
        .live()
        .map(|v| v.version)
        .collect();
    assert_eq!(on_a, (1..=6).collect::<Vec<_>>());
    assert_eq!(on_a, on_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b8_registry_shared_on_one_sqlite_file_and_kept_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("broker.db");
    two_nodes_share_the_registry(open_sqlite(&path).await, open_sqlite(&path).await).await;
    let reopened = open_sqlite(&path).await;
    let (subject, latest) = reopened.latest("users").await.expect("after a restart");
    assert_eq!((subject.schema_id, latest.version), (1, 6));
    assert_eq!(reopened.subjects().await.expect("subjects").len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b8_registry_shared_on_one_redis() {
    let redis = Redis::start().await.expect("redis fixture");
    let url = redis.url();
    two_nodes_share_the_registry(open_redis(&url).await, open_redis(&url).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b8_registry_shared_on_one_postgres() {
    let postgres = Postgres::start().await.expect("postgres fixture");
    let url = postgres.url();
    two_nodes_share_the_registry(open_postgres(&url).await, open_postgres(&url).await).await;
}
