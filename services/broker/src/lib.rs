//! # courier-broker
//!
//! A broker that speaks Danube's gRPC protocol (`courier_impls::grpc::proto`), so that the
//! published `danube-client` works against it unchanged; the contract is
//! `specs/broker.md`. Built so far:
//!
//! - [`catalog`]: the topics this node knows, folded from the stream `broker/catalog` (they
//!   survive a restart), each with its dispatch strategy and delivery path: a live fan-out for
//!   non-reliable topics, a log `broker/t/<ns>/<topic>` of dense offsets for reliable ones.
//!   Its module docs are the contract consumers read by.
//! - [`writer`]: one task per reliable topic grouping concurrent sends into one durable
//!   append, offsets kept dense across writers by the storage's writer sequence.
//! - [`producer`]: the `ProducerService` (CreateProducer, SendMessage): stable producer ids
//!   and re-attachment after a restart, Exclusive access, the producer limit, size checks;
//!   and Courier's send stream beside it (`ProduceStreamService/SendMessages`).
//! - [`server`]: [`server::BrokerServer`], the services over one storage in a tonic router,
//!   a `tracing` span per RPC, and a graceful shutdown ([`lifecycle`]). One node serves every
//!   topic.
//! - [`subscription`]: the subscription engine, pure with an injected clock: Exclusive,
//!   Shared, Failover and KeyShared placement; the reliable in-flight window, acks, cursor,
//!   Nack delays, ack timeouts, redelivery and dead letters; bounded live queues.
//! - [`consumer`]: the `ConsumerService` (Subscribe, ReceiveMessages, Ack, Nack) over the
//!   engine, with durable cursors and dead-letter streams.
//! - [`topic`]: topic names (`/namespace/topic`) and partition naming (`<topic>-part-<i>`).
//! - [`directory`]: which topics exist and who serves them ([`directory::TopicView`]), and
//!   node URLs.
//! - [`discovery`]: the `Discovery` service (TopicLookup, TopicPartitions).
//! - [`health`]: the `HealthCheck` service over a [`health::ClientView`].
//! - `client` (feature `client`): the Rust client, `BrokerClient` with producers and
//!   consumers.
//!
//! - [`metrics`]: Prometheus counters per topic (produced, delivered, acked, nacked,
//!   redelivered, dead-lettered), the producers, consumers and subscriptions held, and the
//!   SendMessage latency; served as `GET /metrics` on a listener of its own.
//! - [`ownership`]: several nodes on one shared storage: claims `broker/own/<ns>/<topic>`
//!   won by compare-and-set, liveness `broker/nodes/<node>` by TTL; others redirect lookups
//!   and refuse producers and subscriptions with `Unavailable`.
//!
//! Known limit of the published `danube-client`: it looks a topic up again only through the
//! topic's old `connect_url`, so when the owner is down longer than the client's retry budget
//! (≈ 3–6 s by default) its consumers there end; our client falls back to the service URL.
//!
//! - [`auth`]: `auth.mode: jwt`: API keys (stored as SHA-256) exchanged for HS256 tokens by
//!   `AuthService/Authenticate`, and one tower layer checking `authorization: Bearer` and
//!   roles on every other RPC.
//! - [`tls`]: TLS and mutual TLS (rustls with ring) for the listener.
//!
//! - [`schema_registry`]: `danube_schema.SchemaRegistry` over the stream `broker/schemas`
//!   (subjects, versions, compatibility for Avro and JSON Schema), and the schema checks of
//!   topics bound to a subject.

pub mod auth;
pub mod catalog;
#[cfg(feature = "client")]
pub mod client;
pub mod consumer;
pub mod directory;
pub mod discovery;
mod first_bytes;
mod folded_log;
pub mod health;
pub mod lifecycle;
pub mod metrics;
pub mod ownership;
pub mod producer;
pub mod schema_registry;
pub mod server;
mod status;
pub mod subscription;
pub mod tls;
pub mod topic;
pub mod writer;
