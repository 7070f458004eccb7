//! Channels across two hubs over real etcd, Redis and Postgres buses (testkit fixtures;
//! `COURIER_TESTKIT_MODE=native` uses the installed servers). Each hub has its own bus
//! connection, as two processes would; history lives in the backend's own storage (Redis,
//! Postgres) or, for etcd, which has no stream storage here, in one in-memory storage both
//! hubs share. Overlapping subscriptions deliver once; a client killed on one node and
//! reconnected to the other recovers every missed publication once and in order; recovery
//! past the history's reach answers resync; presence converges; compression round-trips and
//! is smaller on the wire.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::assert_quiet;
use common::channels::*;
use courier_hub::{
    ChannelPattern, ChannelRule, ClientOptions, Compression, HistoryLimits, Hub, HubConfig,
};
use courier_impls::etcd::{EtcdBus, EtcdBusConfig};
use courier_impls::memory::MemoryStreamStorage;
use courier_impls::postgres::{PgBus, PgBusConfig, PgStorageConfig, PgStreamStorage};
use courier_impls::redis::{RedisBus, RedisBusConfig, RedisStorageConfig, RedisStreamStorage};
use courier_testkit::fixtures::{Etcd, Postgres, Redis, unique_prefix};
use courier_traits::bus::MessageBus;
use courier_traits::storage::StreamStorage;
use courier_traits::transport::Frame as Wire;
use serde_json::{Value, json};

const HEARTBEAT: Duration = Duration::from_millis(200);
const QUIET: Duration = Duration::from_millis(400);
const MAX_LEN: usize = 5;

fn config(node: &str, storage: &Arc<dyn StreamStorage>) -> HubConfig {
    let pattern = |p| ChannelPattern::parse(p).expect(p);
    HubConfig::default()
        .with_node_id(node)
        .with_heartbeat_interval(HEARTBEAT)
        .with_history_storage(storage.clone())
        .with_channel_rule(
            ChannelRule::new(pattern("feed.*"))
                .with_history(HistoryLimits::new(MAX_LEN, Duration::from_secs(3600))),
        )
        .with_channel_rule(ChannelRule::new(pattern("room.*")).with_presence(true))
}

async fn scenario(mut buses: Vec<Arc<dyn MessageBus>>, storage: Arc<dyn StreamStorage>) {
    let (bus_b, bus_a) = (buses.pop().expect("bus b"), buses.pop().expect("bus a"));
    let a = Hub::new(Some(bus_a), config("a", &storage))
        .await
        .expect("hub a");
    let b = Hub::new(Some(bus_b), config("b", &storage))
        .await
        .expect("hub b");
    // Each run has channels of its own (the backends keep history between runs).
    let feed = format!("feed.{}", unique_prefix().replace(['/', ':', '.'], "-"));

    // Overlapping subscriptions on both nodes: one delivery per connection.
    let mut x = connect(&a, "x").await;
    let mut y = connect(&b, "y").await;
    for pattern in [feed.as_str(), "feed.*"] {
        subscribe(&mut x, pattern).await;
        subscribe(&mut y, pattern).await;
    }
    let mut last = String::new();
    let mut epoch = String::new();
    for n in 0..2 {
        b.publish(&feed, &json!(n)).await.expect("publish");
        let (data, offset, their_epoch) = stored_publication(&mut x, &feed).await;
        assert_eq!(data, json!(n));
        (last, epoch) = (offset, their_epoch);
        assert_eq!(stored_publication(&mut y, &feed).await.0, json!(n));
    }
    assert_quiet(&mut x, QUIET).await;
    assert_quiet(&mut y, QUIET).await;

    // x is killed; three publications from both nodes; it comes back on the other node.
    drop(x);
    for n in 2..5 {
        let hub = if n % 2 == 0 { &a } else { &b };
        hub.publish(&feed, &json!(n)).await.expect("publish");
    }
    let mut x = connect(&b, "x").await;
    let since =
        |offset: &str| json!({"channel": feed, "since": {"offset": offset, "epoch": epoch}});
    let reply = request(&mut x, 7, "subscribe", since(&last)).await;
    assert_eq!(reply["data"]["recovered"], true, "{reply}");
    assert_eq!(recovered_data(&reply), [json!(2), json!(3), json!(4)]);
    a.publish(&feed, &json!(5)).await.expect("publish");
    assert_eq!(stored_publication(&mut x, &feed).await.0, json!(5));
    assert_quiet(&mut x, QUIET).await;

    // Past the history's reach (more than MAX_LEN missed): resync. The publications reach
    // node a over the bus some time after `publish` returns; a watcher on a reads them all
    // first, so none can arrive live on `late` after its subscription (which would be correct
    // delivery, but would race the replies this test reads next).
    let mut late = connect(&a, "late").await;
    let mut watcher = connect(&a, "watcher").await;
    subscribe(&mut watcher, &feed).await;
    let first = recovered_offsets(&reply)[0].clone();
    for n in 6..12 {
        b.publish(&feed, &json!(n)).await.expect("publish");
    }
    for n in 6..12 {
        assert_eq!(stored_publication(&mut watcher, &feed).await.0, json!(n));
    }
    let reply = request(&mut late, 8, "subscribe", since(&first)).await;
    assert_eq!(
        (&reply["data"]["recovered"], &reply["data"]["resync"]),
        (&json!(false), &json!(true)),
        "{reply}"
    );

    // Presence converges on both nodes within four heartbeats.
    let room = format!("room.{}", unique_prefix().replace(['/', ':', '.'], "-"));
    subscribe(&mut late, &room).await;
    let mut z = connect(&b, "z").await;
    subscribe(&mut z, &room).await;
    let both = pairs(&[("late", "a"), ("z", "b")]);
    tokio::time::timeout(HEARTBEAT * 4, async {
        while members(&a, &room) != both || members(&b, &room) != both {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("presence converges within four heartbeats");
    drop(z);
    tokio::time::timeout(HEARTBEAT * 4, async {
        while members(&a, &room) != pairs(&[("late", "a")]) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("a leave converges within four heartbeats");

    // Compression: a client on a that asked for gzip gets b's large publication smaller.
    let (mut zipped, server) = courier_impls::memory::duplex_pair(16);
    let gzip = Compression::Gzip { threshold: 256 };
    a.register_client(
        "zipped",
        server,
        ClientOptions::default().with_compression(gzip),
    )
    .expect("registers");
    subscribe(&mut zipped, "big.one").await;
    let large =
        json!({"rows": (0..300).map(|n| json!({"id": n, "name": "row"})).collect::<Vec<_>>()});
    b.publish("big.one", &large).await.expect("publish");
    let wire = loop {
        match tokio::time::timeout(common::WAIT, zipped.receiver.recv()).await {
            Ok(Ok(Some(Wire::Binary(bytes)))) => break bytes,
            Ok(Ok(Some(Wire::Ping(_) | Wire::Pong(_)))) => continue,
            other => panic!("expected a compressed frame, got {other:?}"),
        }
    };
    let Wire::Text(text) = courier_hub::compression::decode(&wire).expect("inflates") else {
        panic!("a text message");
    };
    assert!(
        wire.len() * 4 < text.len(),
        "{} vs {}",
        wire.len(),
        text.len()
    );
    let message: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(message["data"]["data"], large);

    a.shutdown().await;
    b.shutdown().await;
}

fn recovered_offsets(reply: &Value) -> Vec<String> {
    reply["data"]["publications"]
        .as_array()
        .expect("publications")
        .iter()
        .map(|p| p["offset"].as_str().expect("offset").to_owned())
        .collect()
}

#[tokio::test]
async fn channels_over_etcd() {
    let etcd = Etcd::start().await.expect("etcd fixture");
    let prefix = format!("/hub-{}", unique_prefix().replace(['/', ':'], "-"));
    let mut buses = Vec::new();
    for _ in 0..2 {
        let config = EtcdBusConfig::default().with_prefix(prefix.clone());
        let bus = EtcdBus::connect(&etcd.endpoints(), config)
            .await
            .expect("etcd bus");
        buses.push(Arc::new(bus) as Arc<dyn MessageBus>);
    }
    let storage: Arc<dyn StreamStorage> = Arc::new(MemoryStreamStorage::new());
    scenario(buses, storage).await;
}

#[tokio::test]
async fn channels_over_redis() {
    let redis = Redis::start().await.expect("redis fixture");
    let prefix = format!("hub-{}", unique_prefix().replace(['/', ':'], "-"));
    let mut buses = Vec::new();
    for _ in 0..2 {
        let config = RedisBusConfig::default().with_key_prefix(prefix.clone());
        let bus = RedisBus::connect(&redis.url(), config)
            .await
            .expect("redis bus");
        buses.push(Arc::new(bus) as Arc<dyn MessageBus>);
    }
    let storage = RedisStreamStorage::connect(
        &redis.url(),
        RedisStorageConfig::default().with_key_prefix(prefix),
    )
    .await
    .expect("redis storage");
    scenario(buses, Arc::new(storage)).await;
}

#[tokio::test]
async fn channels_over_postgres() {
    let postgres = Postgres::start().await.expect("postgres fixture");
    let mut buses = Vec::new();
    for _ in 0..2 {
        let bus = PgBus::connect(&postgres.url(), PgBusConfig::default())
            .await
            .expect("postgres bus");
        buses.push(Arc::new(bus) as Arc<dyn MessageBus>);
    }
    let storage = PgStreamStorage::connect(&postgres.url(), PgStorageConfig::default())
        .await
        .expect("postgres storage");
    scenario(buses, Arc::new(storage)).await;
}
