//! # courier-broker
//!
//! A broker that speaks Danube's gRPC protocol (`courier_impls::grpc::proto`), so that the
//! published `danube-client` works against it unchanged; the contract is
//! `specs/broker.md`. Built so far:
//!
//! - [`topic`]: topic names (`/namespace/topic`) and partition naming (`<topic>-part-<i>`).
//! - [`directory`]: which topics exist and who serves them ([`directory::TopicView`]), and
//!   node URLs.
//! - [`discovery`]: the `Discovery` service (TopicLookup, TopicPartitions).
//! - [`health`]: the `HealthCheck` service over a [`health::ClientView`].
//!
//! Not started: producers, consumers and dispatch, storage (catalog, ownership claims,
//! cursors), the server binary and the Rust client.

pub mod directory;
pub mod discovery;
pub mod health;
mod status;
pub mod subscription;
pub mod topic;
