//! # courier-hub
//!
//! A WebSocket hub: holds many clients and pushes frames to one (unicast) or all
//! (broadcast). One node works alone with no external service; with a [`MessageBus`] the same
//! hub runs on several nodes that exchange frames and presence over the bus (etcd, Redis,
//! Postgres, or in-memory for tests).
//!
//! What it promises, and the test cases that check it, here in `services/hub/tests/` and,
//! over two `courier hub` processes, in `cli/tests/hub_cluster.rs`:
//!
//! | case | situation | expected |
//! |---|---|---|
//! | T1 | broadcast on one node | every local client receives it once |
//! | T2 | broadcast on two nodes | every client on both nodes receives it once |
//! | T3 | push to a client on another node | only that client receives it |
//! | T4 | a client sends nothing for `read_timeout` | it is disconnected and removed |
//! | T5 | a client's queue is full | the push gets `SendBufferFull`; a client that stays full is evicted |
//! | T6 | the bus fails, then recovers | local delivery goes on; cross-node delivery resumes |
//! | T7 | a `client_id` registers again | the old connection is closed, the new one receives |
//! | T6+ | a publish fails although the bus stored it; the bus server freezes | each client still receives a broadcast once; pushes to remote clients answer `Bus` (503), not `ClientNotFound`; `/health` says the bus is unavailable within 1 s |
//! | | a client sends a message over `max_message_bytes` | the connection is closed with 1009 and a warning |
//!
//! * [`Hub`]: register, push, broadcast, publish to a channel, client count, shutdown.
//! * Channels: clients `subscribe` to names or `*` / `**` patterns and receive each
//!   publication once per connection ([`ChannelPattern`], [`ChannelRule`], [`ClientGrants`]).
//! * [`dispatcher`]: JSON messages from clients routed by `message_type` (`ping` built in).
//! * [`server`]: the axum WebSocket endpoint, the HTTP API for backends, metrics, a demo page.
//! * [`sdk`]: the Rust client: reconnects with backoff, routes replies to requests.
//!
//! The server side of a connection is the [`FrameSender`](courier_traits::transport::FrameSender)
//! / [`FrameReceiver`](courier_traits::transport::FrameReceiver) pair of `courier-traits`: the
//! axum adapter implements it for real sockets, and `courier_impls::memory::duplex_pair` is
//! the in-memory fake the tests use.
//!
//! [`MessageBus`]: courier_traits::bus::MessageBus

mod channels;
mod client;
mod client_options;
mod cluster;
pub mod compression;
mod config;
mod connection;
pub mod dispatcher;
mod error;
mod frame;
mod hub;
mod locks;
mod message;
mod metrics;
mod registry;
pub mod sdk;
pub mod server;

pub use channels::{
    ChannelPattern, ChannelRule, ClientGrants, HistoryLimits, MAX_CHANNEL_LEN, Member,
    validate_channel,
};
pub use client::CloseReason;
pub use client_options::ClientOptions;
pub use compression::Compression;
pub use config::HubConfig;
pub use error::{HubError, validate_client_id};
pub use frame::{Ack, Frame, FrameKind};
pub use hub::{Delivery, Hub};
pub use message::{AppMessage, now_ms};
pub use metrics::Metrics;
pub use registry::BroadcastReport;
