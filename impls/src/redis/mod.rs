//! Redis backends (feature `redis`): [`RedisBus`], fan-out over Redis Streams (or pub/sub for
//! callers who choose at-most-once delivery), and [`RedisStreamStorage`].

mod bus;
mod cas;
mod connection;
mod durability;
mod errors;
mod meta;
mod meta_cache;
mod position;
mod pubsub;
mod scripts;
mod storage;
mod storage_config;
mod wakeups;

pub use ::redis;
pub use bus::{RedisBus, RedisBusConfig, RedisDelivery};
pub use durability::{RedisDurability, server_durability};
pub use storage::RedisStreamStorage;
pub use storage_config::RedisStorageConfig;
