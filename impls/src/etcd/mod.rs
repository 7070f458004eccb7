//! [`EtcdBus`]: a [`MessageBus`] over etcd (feature `etcd`).
//!
//! * **Publish** puts the message under `<prefix>/<topic>` with the bus's lease (default TTL
//!   30 s), so frames expire from the key space by themselves. One lease per bus, kept alive
//!   by a task, never one per message. The put's revision is the message's [`Position`].
//! * **Subscribe** watches that key from a revision. Every put is an event in etcd's history,
//!   so a subscriber sees every message even though each overwrites the key. After a
//!   disconnect the watch resumes from the revision after the last one delivered: no gap, no
//!   duplicate. A revision already compacted away is reported as
//!   [`BusError::PositionUnavailable`], never skipped silently.
//! * **Backpressure**: each subscription buffers `subscriber_buffer` messages; a subscriber
//!   further behind gets [`BusError::Lagged`] with the count it lost.
//!
//! The bus talks to etcd through [`EtcdClient`], a gRPC channel with etcd's generated clients
//! ([`proto`], checked in: building needs no `protoc`).

mod client;
mod errors;
mod lease;
pub mod proto;
mod watcher;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use courier_traits::bus::{
    BusCapabilities, BusError, MessageBus, MessageId, Position, Published, SubscribeFrom,
    Subscription, Topic,
};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::{frame, payload_limit};
pub use client::EtcdClient;
use errors::{bus_error, is_lease_not_found};
use lease::Lease;
use proto::etcdserverpb::{LeaseRevokeRequest, PutRequest};

/// Settings of an [`EtcdBus`]: start from `default()` and change what you need with the
/// `with_*` methods.
///
/// ```
/// use std::time::Duration;
/// use courier_impls::etcd::EtcdBusConfig;
/// let config = EtcdBusConfig::default()
///     .with_prefix("orders/bus")
///     .with_lease_ttl(Duration::from_secs(10));
/// assert_eq!(config.prefix, "orders/bus");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EtcdBusConfig {
    /// Key prefix for every topic (`<prefix>/<topic>`); buses with different prefixes never meet.
    pub prefix: String,
    /// TTL of the bus's lease: how long a frame stays in the key space.
    pub lease_ttl: Duration,
    /// Messages buffered per subscriber before it starts losing the oldest (and is told so).
    pub subscriber_buffer: usize,
    /// Largest payload accepted (etcd's default request limit is 1.5 MiB).
    pub max_payload_bytes: usize,
    /// How long to wait for a connection or a request.
    pub request_timeout: Duration,
}

impl Default for EtcdBusConfig {
    fn default() -> Self {
        EtcdBusConfig {
            prefix: "courier/bus".into(),
            lease_ttl: Duration::from_secs(30),
            subscriber_buffer: 1024,
            max_payload_bytes: 1 << 20,
            request_timeout: Duration::from_secs(5),
        }
    }
}

impl EtcdBusConfig {
    /// Sets [`prefix`](Self::prefix) (default `courier/bus`; non-empty, no trailing `/`).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> EtcdBusConfig {
        self.prefix = prefix.into();
        self
    }

    /// Sets [`lease_ttl`](Self::lease_ttl) (default 30 s; whole seconds, at least 1).
    pub fn with_lease_ttl(mut self, ttl: Duration) -> EtcdBusConfig {
        self.lease_ttl = ttl;
        self
    }

    /// Sets [`subscriber_buffer`](Self::subscriber_buffer) (default 1024; at least 1).
    pub fn with_subscriber_buffer(mut self, messages: usize) -> EtcdBusConfig {
        self.subscriber_buffer = messages;
        self
    }

    /// Sets [`max_payload_bytes`](Self::max_payload_bytes) (default 1 MiB).
    pub fn with_max_payload_bytes(mut self, bytes: usize) -> EtcdBusConfig {
        self.max_payload_bytes = bytes;
        self
    }

    /// Sets [`request_timeout`](Self::request_timeout) (default 5 s).
    pub fn with_request_timeout(mut self, timeout: Duration) -> EtcdBusConfig {
        self.request_timeout = timeout;
        self
    }
}

/// A message bus over etcd; instances on one etcd cluster (and prefix) act as one.
///
/// ```no_run
/// # async fn demo() -> Result<(), courier_traits::BusError> {
/// use courier_impls::etcd::{EtcdBus, EtcdBusConfig};
/// use courier_traits::bus::{MessageBus, SubscribeFrom, Topic};
///
/// let bus = EtcdBus::connect(&["http://127.0.0.1:2379"], EtcdBusConfig::default()).await?;
/// let topic = Topic::new("broadcast")?;
/// let _sub = bus.subscribe(&topic, SubscribeFrom::Live).await?;
/// bus.publish(&topic, "hello, cluster".into()).await?;
/// # Ok(()) }
/// ```
pub struct EtcdBus {
    client: EtcdClient,
    config: EtcdBusConfig,
    lease: Lease,
    /// Cancelled on close, and when the bus is dropped: stops the lease and watch tasks.
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
}

impl EtcdBus {
    /// Connects to `endpoints` and grants the bus's lease.
    pub async fn connect(
        endpoints: &[impl AsRef<str>],
        config: EtcdBusConfig,
    ) -> Result<EtcdBus, BusError> {
        if config.prefix.is_empty() || config.prefix.ends_with('/') {
            return Err(courier_traits::InvalidInput::new(
                "etcd prefix",
                &config.prefix,
                "must be non-empty and not end with '/'",
            )
            .into());
        }
        let client = EtcdClient::connect(endpoints, config.request_timeout).await?;
        let stop = CancellationToken::new();
        let lease = Lease::grant(&client, config.lease_ttl, stop.clone()).await?;
        let guard = stop.clone().drop_guard();
        Ok(EtcdBus {
            client,
            config,
            lease,
            stop,
            _stop_on_drop: guard,
        })
    }

    fn key(&self, topic: &Topic) -> Vec<u8> {
        format!("{}/{}", self.config.prefix, topic).into_bytes()
    }

    fn ensure_open(&self) -> Result<(), BusError> {
        if self.stop.is_cancelled() {
            Err(BusError::Closed)
        } else {
            Ok(())
        }
    }

    async fn put(&self, key: Vec<u8>, value: Vec<u8>) -> Result<i64, tonic::Status> {
        let request = PutRequest {
            key,
            value,
            lease: self.lease.id(),
            ..PutRequest::default()
        };
        let response = self.client.kv().put(request).await?.into_inner();
        Ok(response.header.map(|h| h.revision).unwrap_or_default())
    }
}

#[async_trait]
impl MessageBus for EtcdBus {
    async fn publish_with_id(
        &self,
        topic: &Topic,
        id: MessageId,
        payload: Bytes,
    ) -> Result<Published, BusError> {
        self.ensure_open()?;
        payload_limit::check(&payload, self.config.max_payload_bytes)?;
        let value = frame::encode(&id, &payload);
        let revision = match self.put(self.key(topic), value.clone()).await {
            Ok(revision) => revision,
            // The lease expired while etcd was unreachable: take a new one and try once more.
            Err(e) if is_lease_not_found(&e) => {
                self.lease.regrant(&self.client).await?;
                self.put(self.key(topic), value)
                    .await
                    .map_err(|e| bus_error("put", e))?
            }
            Err(e) => return Err(bus_error("put", e)),
        };
        Ok(Published {
            id,
            position: Some(watcher::position(revision)),
        })
    }

    async fn subscribe(
        &self,
        topic: &Topic,
        from: SubscribeFrom,
    ) -> Result<Subscription, BusError> {
        self.ensure_open()?;
        let start = match &from {
            SubscribeFrom::Live => None,
            SubscribeFrom::After(position) => Some(watcher::parse_position(position)? + 1),
        };
        let stop = self.stop.child_token();
        watcher::subscribe(
            self.client.clone(),
            self.key(topic),
            topic.clone(),
            start,
            self.config.subscriber_buffer,
            stop,
        )
        .await
    }

    fn capabilities(&self) -> BusCapabilities {
        BusCapabilities {
            persistent: true,
            resume: true,
            ordered: true,
            exactly_once: true,
            lag_reporting: true,
            shared: true,
            survives_restart: true,
        }
    }

    async fn close(&self) -> Result<(), BusError> {
        if !self.stop.is_cancelled() {
            self.stop.cancel();
            // Best effort: frames expire with the lease's TTL anyway.
            let request = LeaseRevokeRequest {
                id: self.lease.id(),
            };
            let _ = self.client.lease().lease_revoke(request).await;
        }
        Ok(())
    }
}

/// The etcd revision of a position this bus handed out (for tools that compact history, say).
pub fn revision_of(position: &Position) -> Result<i64, BusError> {
    watcher::parse_position(position)
}

/// The position of the message etcd stored at `revision`: the inverse of [`revision_of`].
pub fn position_of(revision: i64) -> Position {
    watcher::position(revision)
}
