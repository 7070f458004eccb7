//! Event ingestion for Courier.
//!
//! Today this crate holds the Rust batching SDK ([`sdk`]) for the Causality-compatible
//! `POST /v1/events/batch` endpoint; the server side (`courier ingest`) comes next.
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `http` | yes | the SDK builds an `HttpTransport` (HTTP/1.1, hyper) from its endpoint; without it, pass a [`RequestTransport`](courier_traits::transport::RequestTransport) |
//!
//! The upstream protos the endpoint speaks are vendored, unmodified, under `proto/` (see
//! `proto/README.md`); the SDK's tests check its output against them. Building the crate never
//! reads them and needs no `protoc`.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod sdk;
