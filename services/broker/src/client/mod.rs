//! The Rust client (feature `client`; spec §6 without schemas).
//!
//! [`BrokerClient`] makes [`Producer`]s and [`Consumer`]s over tonic channels cached per
//! broker URL (`courier_impls::grpc`):
//!
//! - **Producer**: registers on the topic, or on each partition `<topic>-part-<i>`, after a
//!   lookup; `send(bytes).key(k).attributes(map).await` returns the sequence id, once stored
//!   on reliable topics. Without a key partitions take turns; with one, FNV-1a of the key
//!   picks (as danube-client). A producer the broker answers `CLOSE` for registers again
//!   on its next send, and so does one whose send used up the retry budget. Sends go on one
//!   open stream per broker, shared by the client's producers (Courier's
//!   `ProduceStreamService/SendMessages`: one HTTP/2 DATA frame each way per message, and the
//!   sends and answers of several producers made at once in one write), or with Danube's
//!   `SendMessage` per message against a broker without it and for payloads over 64 KiB.
//! - **Consumer**: lists the partitions at the service URL, subscribes to each concurrently,
//!   and runs one task per partition feeding one bounded channel (100): the consumer is a
//!   `Stream<Item = Result<Message, BrokerError>>`; [`Message::ack`] and [`Message::nack`]
//!   go to the partition the message came from. Acks queued while the partition's previous
//!   ack call is in flight go in one `AckMany` call (Courier's; `Ack` per message against a
//!   broker without it). `CLOSE` from a health check resubscribes;
//!   errors the consumer cannot get past are stream items, never a silent stop.
//! - **Retries**: every call runs under the project's [`RetryPolicy`]
//!   (default [`LinearBackoff`](courier_impls::retry::LinearBackoff): 5 retries, 200 ms
//!   steps, 5 s cap, 50–100 % jitter); retried are connection failures, `Unavailable`,
//!   `DeadlineExceeded` and `ResourceExhausted` ([`rpc_class`]); the topic is looked up again
//!   between attempts, falling back to the service URL when its node cannot be reached.
//! - **Health checks** every 5 s per producer partition and consumer partition; `close()`
//!   stops them and the partition tasks (at most 100 ms of grace, then aborted), and so does
//!   dropping the producer or consumer.
//! - **Schemas** ([`SchemaClient`], `client.schemas()`): register (subject, type,
//!   definition, description, created_by, tags), get by id, version or latest, list
//!   versions, check compatibility, set the mode. A producer built with
//!   [`ProducerBuilder::schema`] resolves its [`SchemaRef`] once at create and stamps
//!   `schema_id` / `schema_version` on every message.
//! - **Auth and TLS**: [`BrokerClientBuilder::api_key`] (exchanged for tokens by
//!   `AuthService/Authenticate`, refreshed after 80 % of their life and once on
//!   `Unauthenticated`) or [`BrokerClientBuilder::token`]; [`Tls`] for `https://` brokers
//!   (CA, client certificate for mutual TLS). Every request is made in one place,
//!   `ClientCore::request`, which adds `authorization: Bearer …`.
//!
//! [`RetryPolicy`]: courier_traits::retry::RetryPolicy

mod ack_queue;
mod acks;
mod broker_client;
mod consumer;
mod core;
mod credentials;
mod error;
mod health;
mod message;
mod partition_consumer;
mod partition_producer;
mod producer;
mod receiver;
mod routing;
mod schemas;
mod send_stream;
mod tasks;
mod tls;

pub use broker_client::{BrokerClient, BrokerClientBuilder};
pub use consumer::{Consumer, ConsumerBuilder, Subscription};
pub use error::{BrokerError, rpc_class};
pub use message::Message;
pub use producer::{PendingSend, Producer, ProducerBuilder};
pub use schemas::{
    Compatibility, RegisterSchema, RegisteredSchema, SchemaClient, SchemaInfo, SchemaRef,
};
pub use tls::Tls;

#[cfg(test)]
mod tests;
