//! I4 and the key log across two nodes on one shared storage: two instances on one SQLite
//! file, and two on one real Redis server (the testkit's). Bounded real-time waits: the
//! nodes follow each other through the storage's own wake-ups.

#![cfg(feature = "server")]

mod keys;

use std::sync::Arc;

use courier_impls::redis::{RedisStorageConfig, RedisStreamStorage};
use courier_impls::sqlite::{SqliteStorageConfig, SqliteStreamStorage};
use courier_ingest::server::TailConfig;
use courier_testkit::fixtures::{Redis, unique_prefix};
use courier_traits::storage::StreamStorage;
use keys::{ADMIN_TOKEN, node, two_nodes_share_one_key_log};

#[tokio::test]
async fn i4_on_two_nodes_sharing_one_sqlite_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("courier.db");
    let open = || async {
        let storage = SqliteStreamStorage::connect(&path, SqliteStorageConfig::default())
            .await
            .expect("sqlite");
        Arc::new(storage) as Arc<dyn StreamStorage>
    };
    let (first, second) = (open().await, open().await);
    let a = node(Arc::clone(&first), Some(ADMIN_TOKEN), TailConfig::default()).await;
    let b = node(second, Some(ADMIN_TOKEN), TailConfig::default()).await;
    two_nodes_share_one_key_log(&a, &b, &*first).await;
}

#[tokio::test]
async fn i4_on_two_nodes_sharing_one_redis_server() {
    let redis = Redis::shared().await.expect("redis");
    let prefix = unique_prefix();
    let open = || async {
        let config = RedisStorageConfig::default().with_key_prefix(prefix.clone());
        let storage = RedisStreamStorage::connect(&redis.url(), config)
            .await
            .expect("redis storage");
        Arc::new(storage) as Arc<dyn StreamStorage>
    };
    let (first, second) = (open().await, open().await);
    let a = node(Arc::clone(&first), Some(ADMIN_TOKEN), TailConfig::default()).await;
    let b = node(second, Some(ADMIN_TOKEN), TailConfig::default()).await;
    two_nodes_share_one_key_log(&a, &b, &*first).await;
}
