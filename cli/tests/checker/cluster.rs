//! The system under a checker: `courier` nodes behind cutting proxies, over one storage or bus
//! server, as a fault target.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use courier_testkit::checker::{Fault, FaultKinds, FaultTarget, Proxy};
use courier_testkit::fixtures::{Mode, ServerFixture, SharedFixture};
use tokio::sync::Mutex;

use super::service::Service;

/// The storage or bus server, as faults see it.
#[async_trait]
pub(crate) trait ServerControl: Send + Sync {
    async fn restart(&self) -> Result<(), String>;
    async fn freeze(&self) -> Result<(), String>;
    async fn thaw(&self) -> Result<(), String>;
}

#[async_trait]
impl<F: ServerFixture + Send> ServerControl for SharedFixture<F> {
    async fn restart(&self) -> Result<(), String> {
        self.stop().await?;
        self.start().await
    }
    async fn freeze(&self) -> Result<(), String> {
        SharedFixture::freeze(self).await
    }
    async fn thaw(&self) -> Result<(), String> {
        SharedFixture::thaw(self).await
    }
}

/// The fixture's server as a fault target, unless it was given by the environment (then the
/// tests cannot stop or freeze it, and only node and connection faults are injected).
pub(crate) fn server_control<F: ServerFixture + Send + 'static>(
    fixture: F,
    mode: Mode,
) -> Option<Arc<dyn ServerControl>> {
    if mode == Mode::Env {
        eprintln!("checker: server given by the environment: no server restarts or freezes");
        return None;
    }
    Some(Arc::new(SharedFixture::new(fixture)))
}

pub(crate) struct Cluster {
    pub(crate) nodes: Vec<Mutex<Service>>,
    pub(crate) proxies: Vec<Proxy>,
    pub(crate) server: Option<Arc<dyn ServerControl>>,
    /// Nodes `0..killable` may be killed (none for an in-memory store, which loses everything
    /// by design).
    pub(crate) killable: usize,
}

impl Cluster {
    /// Puts a proxy in front of each node.
    pub(crate) async fn new(
        nodes: Vec<Service>,
        server: Option<Arc<dyn ServerControl>>,
        killable: usize,
    ) -> Cluster {
        let mut proxies = Vec::new();
        for node in &nodes {
            proxies.push(Proxy::start(node.addr()).await.expect("proxy"));
        }
        Cluster {
            nodes: nodes.into_iter().map(Mutex::new).collect(),
            proxies,
            server,
            killable,
        }
    }

    /// Where clients connect (the proxies).
    pub(crate) fn addrs(&self) -> Vec<std::net::SocketAddr> {
        self.proxies.iter().map(Proxy::addr).collect()
    }

    /// Stops every node with SIGTERM; panics (with their logs) if one does not exit cleanly.
    pub(crate) async fn shutdown(self) {
        for (i, node) in self.nodes.into_iter().enumerate() {
            let mut node = node.into_inner();
            assert!(
                node.stop().await,
                "node {i} did not shut down cleanly:\n{}",
                node.log_tail()
            );
        }
    }
}

#[async_trait]
impl FaultTarget for Cluster {
    fn kinds(&self) -> FaultKinds {
        FaultKinds {
            nodes: self.killable.min(self.nodes.len()),
            restart_server: self.server.is_some(),
            freeze_server: self.server.is_some(),
            drop_connections: true,
        }
    }

    async fn inject(&self, fault: Fault) -> Result<(), String> {
        match fault {
            Fault::KillNode(i) => {
                let mut node = self.nodes[i].lock().await;
                node.kill_and_restart(Duration::from_millis(300)).await
            }
            Fault::RestartServer => match &self.server {
                Some(server) => server.restart().await,
                None => Err("no server".into()),
            },
            Fault::FreezeServer(how_long) => match &self.server {
                Some(server) => {
                    server.freeze().await?;
                    tokio::time::sleep(how_long).await;
                    server.thaw().await
                }
                None => Err("no server".into()),
            },
            Fault::DropConnections => {
                for proxy in &self.proxies {
                    proxy.cut_all();
                }
                Ok(())
            }
        }
    }
}
