//! The universal bus suite against `RedisBus` on a real Redis from the testkit (append-only
//! file with fsync always, so acknowledged publishes survive the restart case), plus trimming.

use async_trait::async_trait;
use courier::bus::{BusError, MessageBus, SubscribeFrom, Topic};
use courier::impls::redis::{
    RedisBus, RedisBusConfig, RedisDelivery, RedisStorageConfig, RedisStreamStorage,
};
use courier_testkit::fixtures::{Redis, SharedFixture, unique_prefix};
use courier_testkit::suites::{BusFactory, StorageFactory};

/// One Redis server per factory; every `connect` is a new bus (a node) on it, same prefix.
struct RedisFactory {
    redis: SharedFixture<Redis>,
    url: String,
    prefix: String,
    delivery: RedisDelivery,
}

impl RedisFactory {
    async fn start() -> RedisFactory {
        RedisFactory::start_with(RedisDelivery::Streams).await
    }

    async fn start_with(delivery: RedisDelivery) -> RedisFactory {
        let redis = Redis::start().await.expect("redis starts");
        let url = redis.url();
        let prefix = format!("courier-test:{}", unique_prefix());
        RedisFactory {
            redis: SharedFixture::new(redis),
            url,
            prefix,
            delivery,
        }
    }

    fn config(&self) -> RedisBusConfig {
        RedisBusConfig {
            key_prefix: self.prefix.clone(),
            delivery: self.delivery,
            ..RedisBusConfig::default()
        }
    }
}

#[async_trait]
impl BusFactory for RedisFactory {
    type Bus = RedisBus;
    async fn connect(&self) -> RedisBus {
        RedisBus::connect(&self.url, self.config())
            .await
            .expect("connect to redis")
    }
    async fn stop_server(&self) -> Result<(), String> {
        self.redis.stop().await
    }
    async fn start_server(&self) -> Result<(), String> {
        self.redis.start().await
    }
}

mod redis_bus {
    use super::*;

    courier_testkit::bus_suite!(
        factory = RedisFactory::start().await,
        persistent = true,
        resume = true,
        ordered = true,
        exactly_once = true,
        lag_reporting = true,
        shared = true,
        survives_restart = true,
    );
}

/// The same suite with at-most-once pub/sub delivery: no persistence, no resume, and no
/// promise across a server restart (messages published while a subscriber reconnects are lost).
mod redis_pubsub_bus {
    use super::*;

    courier_testkit::bus_suite!(
        factory = RedisFactory::start_with(RedisDelivery::PubSub).await,
        persistent = false,
        resume = false,
        ordered = true,
        exactly_once = true,
        lag_reporting = true,
        shared = true,
        survives_restart = false,
    );
}

#[async_trait]
impl StorageFactory for RedisFactory {
    type Storage = RedisStreamStorage;
    async fn connect(&self) -> RedisStreamStorage {
        let config = RedisStorageConfig {
            key_prefix: self.prefix.clone(),
            ..RedisStorageConfig::default()
        };
        RedisStreamStorage::connect(&self.url, config)
            .await
            .expect("connect to redis")
    }
    async fn stop_server(&self) -> Result<(), String> {
        self.redis.stop().await
    }
    async fn start_server(&self) -> Result<(), String> {
        self.redis.start().await
    }
}

mod redis_storage {
    use super::*;

    courier_testkit::storage_suite!(
        factory = RedisFactory::start().await,
        durable = true,
        shared = true,
        ttl = true,
        producers = true,
        forks = true,
        survives_restart = true,
    );
}

#[tokio::test]
async fn resuming_from_a_trimmed_position_is_an_explicit_error() {
    let factory = RedisFactory::start().await;
    let config = RedisBusConfig {
        max_len_per_topic: 10,
        ..factory.config()
    };
    let bus = RedisBus::connect(&factory.url, config)
        .await
        .expect("connect");
    let topic = Topic::new("trimmed").expect("valid");
    let first = bus.publish(&topic, "first".into()).await.expect("publish");
    for i in 0..500 {
        bus.publish(&topic, format!("m{i}").into())
            .await
            .expect("publish");
    }
    match bus
        .subscribe(
            &topic,
            SubscribeFrom::After(first.position.expect("position")),
        )
        .await
    {
        Err(BusError::PositionUnavailable { reason, .. }) => {
            assert!(reason.contains("trimmed"), "{reason}")
        }
        Err(other) => panic!("expected PositionUnavailable, got {other}"),
        Ok(_) => panic!("expected PositionUnavailable, got a subscription"),
    }
}

#[tokio::test]
async fn unreachable_server_is_a_retryable_error() {
    // Port 1 on loopback: nothing listens there.
    let result = RedisBus::connect("redis://127.0.0.1:1/", RedisBusConfig::default()).await;
    match result {
        Err(err) => assert!(courier::Classify::is_retryable(&err), "{err}"),
        Ok(_) => panic!("connected to a closed port"),
    }
}
