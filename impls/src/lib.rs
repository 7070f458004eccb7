//! # courier-impls
//!
//! Implementations of the [`courier_traits`] traits. Each backend sits behind its own feature
//! flag, so you compile only what you use; retry policies are always there.
//!
//! | feature | what it adds |
//! |---|---|
//! | `memory` (default) | [`memory::MemoryBus`], [`memory::MemoryStreamStorage`], in-process transports |
//! | `etcd` | `etcd::EtcdBus`: a bus over etcd (lease-scoped frames, watch from a revision) |
//! | `redis` | `redis::RedisBus` (Redis Streams, or pub/sub at most once) and `redis::RedisStreamStorage` |
//! | `postgres` | `postgres::PgStreamStorage` (streams shared by every node) and `postgres::PgBus` (rows + NOTIFY) |
//! | `http` | `http::HttpTransport`: a `RequestTransport` over HTTP/1.1 with pooled connections |
//! | `grpc` | `grpc::GrpcChannels` (tonic channels cached per URL), `grpc::GrpcTransport`, the Danube protos |
//! | `websocket` | `websocket::WsTransport`: a `DuplexTransport` over WebSocket (`ws://`) |
//! | `sqlite` | `sqlite::SqliteStreamStorage`: the embedded durable storage (WAL, fsync per commit) |
//! | `log` | `log::LogStreamStorage`: embedded durable streams in memory, every change journaled to one file (group-commit fdatasync) |
//! | (always) | [`retry`]: exponential / linear / fixed / never policies, a shared budget, the `retry` driver |
//! | (always) | [`metrics`]: a small Prometheus registry (counters, gauges, histograms, text format) for the services |
//!
//! Every backend passes the same universal suites of `courier-testkit` against a real server.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use courier_impls::memory::MemoryBus;
//! use courier_traits::bus::{MessageBus, SubscribeFrom, Topic};
//! use futures::StreamExt;
//!
//! let bus = MemoryBus::new();
//! let topic = Topic::new("orders")?;
//! let mut a = bus.subscribe(&topic, SubscribeFrom::Live).await?;
//! let mut b = bus.subscribe(&topic, SubscribeFrom::Live).await?;
//! bus.publish(&topic, "order #1".into()).await?;
//! assert_eq!(a.next().await.unwrap()?.payload, b.next().await.unwrap()?.payload);
//! # Ok(()) }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(any(feature = "redis", feature = "postgres"))]
mod append_queue;
#[cfg(feature = "etcd")]
#[cfg_attr(docsrs, doc(cfg(feature = "etcd")))]
pub mod etcd;
#[cfg(any(feature = "etcd", feature = "redis"))]
mod frame;
#[cfg(feature = "grpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
pub mod grpc;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
#[cfg(feature = "http-server")]
#[cfg_attr(docsrs, doc(cfg(feature = "http-server")))]
pub mod http_server;
#[cfg(feature = "redis")]
mod keyed_lock;
#[cfg(feature = "log")]
#[cfg_attr(docsrs, doc(cfg(feature = "log")))]
pub mod log;
#[cfg(feature = "memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
pub mod memory;
pub mod metrics;
#[cfg(any(feature = "etcd", feature = "redis", feature = "postgres"))]
mod outbox;
#[cfg(any(
    feature = "memory",
    feature = "etcd",
    feature = "redis",
    feature = "postgres"
))]
mod payload_limit;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
pub mod retry;
#[cfg(any(
    feature = "memory",
    feature = "sqlite",
    feature = "postgres",
    feature = "redis"
))]
mod rules;
#[cfg(any(feature = "etcd", feature = "postgres"))]
mod sequence_position;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql_forks;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
mod sql_model;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
mod wakers;
#[cfg(feature = "websocket")]
#[cfg_attr(docsrs, doc(cfg(feature = "websocket")))]
pub mod websocket;
