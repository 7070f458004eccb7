//! The Rust batching SDK: track events without blocking, deliver them in batches to a
//! `/v1/events/batch` endpoint (Courier's `courier ingest`, or an upstream Causality server).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use courier_ingest::sdk::{Compression, Event, IngestClient};
//!
//! let client = IngestClient::builder("http://127.0.0.1:8080", "0123abcd...", "my-app")
//!     .batch_size(50)
//!     .flush_interval(Duration::from_secs(30))
//!     .compression(Compression::None)
//!     .on_error(|e| eprintln!("ingest: {e}"))
//!     .build()?;
//! client.track(Event::custom("signup").param("plan", "pro").user_id("u1"))?;
//! client.flush().await?;
//! let report = client.close().await;
//! println!("delivered {}, unsent {}", report.delivered, report.unsent);
//! # Ok(()) }
//! ```
//!
//! # How it behaves
//!
//! * [`IngestClient::track`] is synchronous and never waits: it encodes the event and
//!   `try_send`s it into a bounded queue. A full queue drops the new event
//!   ([`TrackError::QueueFull`]); every refusal is counted in [`Stats::dropped`].
//! * One worker task forms batches (by count, by body bytes, and at the latest
//!   `flush_interval` after a batch's first event) and keeps one request in flight, forming the
//!   next batch while it waits, so events reach the server in order.
//! * Network errors, timeouts, 408, 429 and 5xx (but 501, 505) are retried under the
//!   [`RetryPolicy`](courier_traits::retry::RetryPolicy), at most `max_retries` times, waiting at
//!   least the server's `Retry-After`. Every attempt sends the same body, so the same
//!   idempotency keys: the server stores each event once. Other 4xx are terminal; 413 splits
//!   the batch in halves.
//! * [`IngestClient::flush`] waits for everything queued before it; [`IngestClient::close`]
//!   drains within `shutdown_timeout` and reports delivered, failed and unsent counts.
//!   Dropping the client without `close` stops the worker and logs the unsent count.
//!
//! The envelope is written in proto field names with exactly one payload key; `user_id` and
//! `session_id` go into `custom_event.string_params`.

mod builder;
mod client;
mod config;
mod delivery;
mod error;
mod event;
mod stats;
mod worker;

pub use builder::{IngestClientBuilder, MAX_BATCH_SIZE, MAX_QUEUE_CAPACITY};
pub use client::IngestClient;
pub use config::{Compression, ErrorCallback};
pub use delivery::BATCH_PATH;
pub use error::{ConfigError, DeliveryError, FlushError, TrackError};
pub use event::{Event, ParamValue};
pub use stats::{CloseReport, Dropped, Stats};
