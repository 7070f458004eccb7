//! # courier-streams
//!
//! [Durable Streams](https://github.com/durable-streams/durable-streams) over any Courier
//! [`StreamStorage`](courier_traits::storage::StreamStorage): an HTTP server (axum) that passes
//! the official conformance suite, and a Rust client.
//!
//! * [`server`]: `PUT` create (idempotent, closed, forks), `POST` append / close (idempotent
//!   producers, `Stream-Seq`), `GET` catch-up, long-poll and SSE, `HEAD`, `DELETE`, JSON mode,
//!   TTL and expiry, ETags, cursors, CORS and security headers, gzip.
//! * [`client`]: create, append, read, head, delete; subscriptions (long-poll or SSE) that
//!   resume without gaps or duplicates; a batching, optionally idempotent producer.
//! * [`protocol`]: header names and value formats shared by both sides.

pub mod client;
pub mod protocol;
pub mod server;
