//! # Courier
//!
//! A Rust toolkit for moving messages reliably between services: four async traits, real
//! backends for them, and a testkit that proves every backend against the same suites on real
//! servers.
//!
//! This facade re-exports the traits ([`traits`], and the most used names at the root) and the
//! implementations ([`impls`]).
//!
//! Backends, transports and services are chosen by feature; only `memory` is on by default.
//! The `courier` binary (`courier streams`, `courier hub`) with every backend compiled in is
//! the separate `courier-cli` package.
//!
//! | feature | what it adds |
//! |---|---|
//! | `memory` (default) | in-process `impls::memory::MemoryBus` and `impls::memory::MemoryStreamStorage` |
//! | `sqlite` | `impls::sqlite::SqliteStreamStorage`: embedded durable storage (WAL, fsync per commit) |
//! | `redis` | `impls::redis::RedisBus` and `impls::redis::RedisStreamStorage` |
//! | `postgres` | `impls::postgres::PgStreamStorage` and `impls::postgres::PgBus` |
//! | `etcd` | `impls::etcd::EtcdBus` |
//! | `http` | `impls::http::HttpTransport`, a `RequestTransport` over HTTP/1.1 |
//! | `websocket` | `impls::websocket::WsTransport`, a `DuplexTransport` over WebSocket (`ws://`) |
//! | `grpc` | `impls::grpc`: tonic channels cached per URL, call deadlines, status classification, `GrpcTransport` |
//! | `streams` | the Durable Streams server and client, as `streams` |
//! | `hub` | the WebSocket hub, its HTTP API and client SDK, as `hub` |
//! | `ingest` | the event-ingestion batching SDK (`IngestClient`), as `ingest` |
//! | `ingest-server` | `ingest` plus the ingestion server (`ingest::server::IngestServer`) |
//! | `broker` | the gRPC broker speaking Danube's protocol (`broker::server::BrokerServer`), as `broker` |
//! | `mocks` | mockall mocks of every trait (`traits::bus::MockMessageBus`, ...) |
//! | (always) | the traits, and `impls::retry`: retry policies and the `Retry` driver |
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use courier::storage::{AppendRequest, ReadLimits, StreamConfig, StreamName};
//! use courier::StreamStorage;
//!
//! let store = courier::impls::memory::MemoryStreamStorage::new();
//! let name = StreamName::new("audit")?;
//! store.create(&name, StreamConfig::with_content_type("text/plain"), vec![]).await?;
//! store.append(&name, AppendRequest::record("user 7 logged in")).await?;
//! let batch = store.read(&name, None, ReadLimits::default()).await?;
//! assert_eq!(batch.records.len(), 1);
//! # Ok(()) }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

pub use courier_impls as impls;
/// The Durable Streams HTTP server and client (feature `streams`).
#[cfg(feature = "streams")]
#[cfg_attr(docsrs, doc(cfg(feature = "streams")))]
pub use courier_streams as streams;

/// The WebSocket hub, its HTTP API and Rust client SDK (feature `hub`).
#[cfg(feature = "hub")]
#[cfg_attr(docsrs, doc(cfg(feature = "hub")))]
pub use courier_hub as hub;

/// The event-ingestion batching SDK (feature `ingest`) and server (feature `ingest-server`).
#[cfg(feature = "ingest")]
#[cfg_attr(docsrs, doc(cfg(feature = "ingest")))]
pub use courier_ingest as ingest;

/// The gRPC broker speaking Danube's protocol (feature `broker`).
#[cfg(feature = "broker")]
#[cfg_attr(docsrs, doc(cfg(feature = "broker")))]
pub use courier_broker as broker;
pub use courier_traits as traits;
pub use courier_traits::{
    BusError, Classify, DuplexTransport, ErrorClass, MessageBus, RequestTransport, RetryPolicy,
    StorageError, StreamStorage, TransportError, bus, retry, storage, transport,
};
