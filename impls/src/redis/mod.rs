//! Redis backends (feature `redis`): [`RedisBus`], fan-out over Redis Streams, or over
//! pub/sub for callers who choose at-most-once delivery.

mod bus;
mod errors;
mod position;
mod pubsub;

pub use bus::{RedisBus, RedisBusConfig, RedisDelivery};
pub use deadpool_redis::redis;
