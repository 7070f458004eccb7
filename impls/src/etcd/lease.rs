//! The bus's one lease: granted on connect, kept alive by a task, granted anew if it is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use courier_traits::bus::BusError;
use tokio_util::sync::CancellationToken;

use super::client::EtcdClient;
use super::errors::bus_error;
use super::proto::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest};

/// The current lease id, shared by the publisher and the keep-alive task.
#[derive(Clone)]
pub(super) struct Lease {
    id: Arc<AtomicI64>,
    ttl: Duration,
}

impl Lease {
    /// Grants a lease and starts keeping it alive until `stop` is cancelled.
    pub(super) async fn grant(
        client: &EtcdClient,
        ttl: Duration,
        stop: CancellationToken,
    ) -> Result<Lease, BusError> {
        let lease = Lease {
            id: Arc::new(AtomicI64::new(0)),
            ttl,
        };
        lease.regrant(client).await?;
        tokio::spawn(lease.clone().keep_alive(client.clone(), stop));
        Ok(lease)
    }

    pub(super) fn id(&self) -> i64 {
        self.id.load(Ordering::Acquire)
    }

    /// Replaces the lease with a new one (after it expired while etcd was unreachable).
    pub(super) async fn regrant(&self, client: &EtcdClient) -> Result<i64, BusError> {
        let request = LeaseGrantRequest {
            ttl: self.ttl.as_secs().max(1) as i64,
            id: 0, // etcd picks the id
        };
        let granted = client
            .lease()
            .lease_grant(request)
            .await
            .map_err(|e| bus_error("lease grant", e))?
            .into_inner();
        if !granted.error.is_empty() {
            return Err(BusError::Backend {
                message: format!("etcd lease grant: {}", granted.error),
                source: None,
            });
        }
        self.id.store(granted.id, Ordering::Release);
        Ok(granted.id)
    }

    /// Refreshes the lease every third of its TTL; on failure retries every second and, if the
    /// lease is gone, grants a new one. Stops when `stop` is cancelled.
    async fn keep_alive(self, client: EtcdClient, stop: CancellationToken) {
        let period = (self.ttl / 3).max(Duration::from_millis(500));
        loop {
            let pause = match self.refresh_once(&client).await {
                Ok(()) => period,
                Err(error) => {
                    tracing::warn!(%error, "etcd lease keep-alive failed; retrying");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// One keep-alive exchange on a stream of its own: etcd answers each request before it
    /// reads the end of the request stream, so one request and one response.
    async fn refresh_once(&self, client: &EtcdClient) -> Result<(), BusError> {
        let request = LeaseKeepAliveRequest { id: self.id() };
        let mut responses = client
            .lease()
            .lease_keep_alive(futures::stream::iter([request]))
            .await
            .map_err(|e| bus_error("lease keep-alive", e))?
            .into_inner();
        match responses
            .message()
            .await
            .map_err(|e| bus_error("lease keep-alive", e))?
        {
            // A TTL of 0 means the lease no longer exists.
            Some(response) if response.ttl > 0 => Ok(()),
            _ => self.regrant(client).await.map(|_| ()),
        }
    }
}
