//! Redis backends (feature `redis`): [`RedisBus`], fan-out over Redis Streams.

mod bus;
mod errors;
mod position;

pub use bus::{RedisBus, RedisBusConfig};
pub use deadpool_redis::redis;
