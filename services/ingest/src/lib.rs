//! Event ingestion for Courier.
//!
//! This crate holds the Rust batching SDK ([`sdk`]) for the Causality-compatible
//! `POST /v1/events/batch` endpoint and, behind the `server` feature, the server's request
//! layer (`server`: body decoding, parsing and validation of both event shapes, responses).
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `http` | yes | the SDK builds an `HttpTransport` (HTTP/1.1, hyper) from its endpoint; without it, pass a [`RequestTransport`](courier_traits::transport::RequestTransport) |
//! | `server` | no | the server's request layer (axum, `prost-reflect`); the SDK alone never pulls these in |
//!
//! The upstream protos the endpoint speaks are vendored, unmodified, under `proto/` (see
//! `proto/README.md`); the SDK's tests check its output against them. The server reads
//! envelopes with descriptors from the checked-in `proto/causality-v1.binpb` (a drift test
//! recompiles the protos with `protox`), so building the crate needs no `protoc`.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod sdk;

#[cfg(feature = "server")]
pub mod server;
