//! # Courier
//!
//! A Rust toolkit for moving messages reliably between services: four async traits, real
//! backends for them, and a testkit that proves every backend against the same suites on real
//! servers.
//!
//! This facade re-exports the traits ([`traits`], and the most used names at the root) and the
//! implementations ([`impls`]).
//!
//! | feature | what it adds |
//! |---|---|
//! | `memory` (default) | in-process [`MemoryBus`](impls::memory::MemoryBus) and [`MemoryStreamStorage`](impls::memory::MemoryStreamStorage) |
//! | `streams` (default, via `cli`) | the Durable Streams server and client, as [`streams`] |
//! | `hub` (default, via `cli`) | the WebSocket hub, its API and client SDK, as [`hub`] |
//! | `cli` (default) | the `courier` binary: `courier streams` (embedded SQLite by default), `courier hub` |
//! | `mocks` | mockall mocks of every trait (`traits::bus::MockMessageBus`, ...) |
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

pub use courier_impls as impls;
/// The Durable Streams HTTP server and client (feature `streams`).
#[cfg(feature = "streams")]
pub use courier_streams as streams;

/// The WebSocket hub, its HTTP API and Rust client SDK (feature `hub`).
#[cfg(feature = "hub")]
pub use courier_hub as hub;
pub use courier_traits as traits;
pub use courier_traits::{
    BusError, Classify, DuplexTransport, ErrorClass, MessageBus, RequestTransport, RetryPolicy,
    StorageError, StreamStorage, TransportError, bus, retry, storage, transport,
};
