//! Redis backends (feature `redis`): [`RedisBus`], fan-out over Redis Streams (or pub/sub for
//! callers who choose at-most-once delivery), and [`RedisStreamStorage`].

mod bus;
mod durability;
mod errors;
mod position;
mod pubsub;
mod scripts;
mod storage;

pub use bus::{RedisBus, RedisBusConfig, RedisDelivery};
pub use deadpool_redis::redis;
pub use durability::{RedisDurability, server_durability};
pub use storage::{RedisStorageConfig, RedisStreamStorage};
