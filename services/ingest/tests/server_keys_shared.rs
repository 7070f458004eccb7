//! I4 and the key log across two nodes on one shared storage: two instances on one SQLite
//! file, two on one real Redis server and two on one real Postgres database (the testkit's).
//! Bounded real-time waits: the nodes follow each other through the storage's own wake-ups.

#![cfg(feature = "server")]

mod keys;

use std::future::Future;
use std::sync::Arc;

use courier_impls::postgres::{PgStorageConfig, PgStreamStorage};
use courier_impls::redis::{RedisStorageConfig, RedisStreamStorage};
use courier_impls::sqlite::{SqliteStorageConfig, SqliteStreamStorage};
use courier_ingest::server::TailConfig;
use courier_testkit::fixtures::{Postgres, Redis, unique_prefix};
use courier_traits::storage::StreamStorage;
use keys::{ADMIN_TOKEN, node, two_nodes_share_one_key_log};

/// I4 on two nodes, each on its own storage instance from `open` (one shared backend).
async fn i4_on_two_instances<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn StreamStorage>>,
{
    let (first, second) = (open().await, open().await);
    let a = node(Arc::clone(&first), Some(ADMIN_TOKEN), TailConfig::default()).await;
    let b = node(second, Some(ADMIN_TOKEN), TailConfig::default()).await;
    two_nodes_share_one_key_log(&a, &b, &*first).await;
}

#[tokio::test]
async fn i4_on_two_nodes_sharing_one_sqlite_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("courier.db");
    i4_on_two_instances(|| async {
        let storage = SqliteStreamStorage::connect(&path, SqliteStorageConfig::default())
            .await
            .expect("sqlite");
        Arc::new(storage) as Arc<dyn StreamStorage>
    })
    .await;
}

#[tokio::test]
async fn i4_on_two_nodes_sharing_one_redis_server() {
    let redis = Redis::shared().await.expect("redis");
    let prefix = unique_prefix();
    i4_on_two_instances(|| async {
        let config = RedisStorageConfig::default().with_key_prefix(prefix.clone());
        let storage = RedisStreamStorage::connect(&redis.url(), config)
            .await
            .expect("redis storage");
        Arc::new(storage) as Arc<dyn StreamStorage>
    })
    .await;
}

#[tokio::test]
async fn i4_on_two_nodes_sharing_one_postgres_database() {
    let postgres = Postgres::shared().await.expect("postgres");
    let schema = unique_prefix();
    i4_on_two_instances(|| async {
        let config = PgStorageConfig::default().with_schema(schema.clone());
        let storage = PgStreamStorage::connect(&postgres.url(), config)
            .await
            .expect("postgres storage");
        Arc::new(storage) as Arc<dyn StreamStorage>
    })
    .await;
}
