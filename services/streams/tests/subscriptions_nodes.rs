//! Two server nodes on one real Redis and on one real Postgres (testkit servers), each with its
//! own storage connection, subscription cache and background task: appends land on both nodes
//! at once, and every wake is still delivered once (one node wins each generation's
//! compare-and-set), with consecutive generations and every stream acknowledged in the end.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use courier_impls::postgres::{PgStorageConfig, PgStreamStorage};
use courier_impls::redis::{RedisStorageConfig, RedisStreamStorage};
use courier_testkit::fixtures::{Postgres, Redis};
use courier_traits::storage::StreamStorage;
use serde_json::{Value, json};
use support::{Node, Receiver, eventually, signature_verifies, test_settings};

/// Appends per node.
const APPENDS: usize = 12;

async fn one_delivery_per_wake(a: Arc<dyn StreamStorage>, b: Arc<dyn StreamStorage>) {
    let a = Node::start(a, test_settings()).await;
    let b = Node::start(b, test_settings()).await;
    let mut receiver = Receiver::start(json!({ "done": true })).await;
    let body =
        json!({ "type": "webhook", "pattern": "orders/*", "webhook": { "url": receiver.url } });
    let (status, created) = a.put_subscription("nodes", body.clone()).await;
    assert_eq!(status, 201, "{created}");
    // The other node sees the same subscription, and publishes the same key.
    assert_eq!(b.put_subscription("nodes", body).await.0, 200);
    let jwks = a.jwks().await;
    assert_eq!(b.jwks().await, jwks);

    // Both nodes append at the same time, to streams of their own and to a shared one.
    let on_a = async {
        for i in 0..APPENDS {
            let stream = if i % 2 == 0 {
                "orders/a"
            } else {
                "orders/shared"
            };
            a.append(stream, json!({ "node": "a", "i": i })).await;
        }
    };
    let on_b = async {
        for i in 0..APPENDS {
            let stream = if i % 2 == 0 {
                "orders/b"
            } else {
                "orders/shared"
            };
            b.append(stream, json!({ "node": "b", "i": i })).await;
        }
    };
    tokio::join!(on_a, on_b);

    // Wait until every stream is acknowledged at its tail, collecting deliveries meanwhile.
    let mut deliveries: Vec<Value> = Vec::new();
    eventually("every stream acknowledged at its tail", || {
        while let Some(d) = receiver.try_next() {
            assert!(signature_verifies(&d, &jwks), "signed with the shared key");
            deliveries.push(d.body);
        }
        let a = &a;
        async move {
            let (_, sub) = a.get_subscription("nodes").await;
            let streams = sub["streams"].as_array().cloned().unwrap_or_default();
            if streams.len() != 3 {
                return false;
            }
            for stream in streams {
                let path = format!("/v1/stream/{}", stream["path"].as_str().unwrap_or(""));
                let tail = a.tail(&path).await;
                if stream["acked_offset"] != json!(tail) {
                    return false;
                }
            }
            true
        }
    })
    .await;
    // Late deliveries (none expected) would show up here.
    while let Some(d) = receiver.next_within(Duration::from_millis(500)).await {
        deliveries.push(d.body);
    }
    let generations: Vec<u64> = deliveries
        .iter()
        .map(|d| d["generation"].as_u64().expect("generation"))
        .collect();
    let distinct: BTreeSet<u64> = generations.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        generations.len(),
        "a generation was delivered twice: {generations:?}"
    );
    let expected: BTreeSet<u64> = (1..=generations.len() as u64).collect();
    assert_eq!(distinct, expected, "generations are consecutive from 1");
    assert!(!generations.is_empty());
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_redis_deliver_each_wake_once() {
    let redis = Redis::start().await.expect("redis");
    let open = || async {
        let storage = RedisStreamStorage::connect(&redis.url(), RedisStorageConfig::default())
            .await
            .expect("redis storage");
        Arc::new(storage) as Arc<dyn StreamStorage>
    };
    one_delivery_per_wake(open().await, open().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_postgres_deliver_each_wake_once() {
    let postgres = Postgres::start().await.expect("postgres");
    let open = || async {
        let storage = PgStreamStorage::connect(&postgres.url(), PgStorageConfig::default())
            .await
            .expect("postgres storage");
        Arc::new(storage) as Arc<dyn StreamStorage>
    };
    one_delivery_per_wake(open().await, open().await).await;
}
