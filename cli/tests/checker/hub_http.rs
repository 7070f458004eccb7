//! The hub checker's API calls over HTTP (through each node's proxy) and its recording clients.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use courier::hub::sdk::{Event, HubClient};
use courier::impls::http::HttpTransport;
use courier::traits::transport::{Frame, Method, Request, RequestTransport};
use courier_testkit::checker::hub::{ClientLog, ClientRecorder, HubApi, HubClients, HubOp, HubRet};
use courier_testkit::checker::{History, Outcome};
use tokio::task::JoinSet;

use super::http_outcome::{refused_or_unknown, transport_error, transports};

pub(crate) const API_KEY: &str = "checker-key";
/// Longer than the hub's own wait for an unclear publish (5 s), so that answer is seen.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct HttpHub {
    nodes: Vec<HttpTransport>,
}

impl HttpHub {
    pub(crate) fn new(addrs: &[std::net::SocketAddr]) -> HttpHub {
        HttpHub {
            nodes: transports(addrs, REQUEST_TIMEOUT),
        }
    }
}

#[async_trait]
impl HubApi for HttpHub {
    fn nodes(&self) -> usize {
        self.nodes.len()
    }

    async fn call(&self, node: usize, op: &HubOp) -> Outcome<HubRet> {
        let target = match op {
            HubOp::Broadcast { .. } => "/api/v1/broadcast".to_owned(),
            HubOp::Unicast { target, .. } => format!("/api/v1/clients/{target}/push"),
        };
        let request = Request::new(Method::Post, target)
            .header("Authorization", format!("Bearer {API_KEY}"))
            .body(op.payload().to_owned());
        let response = match self.nodes[node % self.nodes.len()].send(request).await {
            Ok(r) => r,
            Err(e) => return transport_error(e),
        };
        let status = response.status;
        let body = match response.body.collect(1 << 20).await {
            Ok(b) => b,
            Err(e) => return Outcome::Info(e.to_string()),
        };
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        match status {
            200 => Outcome::Ok(HubRet {
                delivered: matches!(body["delivered"].as_str(), Some("local" | "remote")),
            }),
            _ => refused_or_unknown(status, &format!(": {body}")),
        }
    }
}

/// SDK clients, each recording its events with the history's clock; stopped when dropped.
pub(crate) struct Clients {
    recorders: Vec<Arc<ClientRecorder>>,
    clients: Vec<HubClient>,
    tasks: JoinSet<()>,
}

impl Clients {
    pub(crate) fn new() -> Clients {
        Clients {
            recorders: Vec::new(),
            clients: Vec::new(),
            tasks: JoinSet::new(),
        }
    }

    /// Connects client `id` to `addr` (reconnecting after a lost connection) and waits for
    /// its first welcome.
    pub(crate) async fn connect(
        &mut self,
        id: &str,
        addr: std::net::SocketAddr,
        history: &Arc<History<HubOp, HubRet>>,
    ) {
        let (client, mut events) = HubClient::builder(&format!("ws://{addr}"))
            .client_id(id)
            .connect();
        let recorder = Arc::new(ClientRecorder::new(id));
        let (welcomed_tx, welcomed) = tokio::sync::oneshot::channel();
        let (log, history) = (recorder.clone(), history.clone());
        self.tasks.spawn(async move {
            let mut welcomed_tx = Some(welcomed_tx);
            while let Some(event) = events.recv().await {
                match event {
                    Event::Connected { .. } => {
                        log.connected(history.tick());
                        if let Some(tx) = welcomed_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Event::Disconnected { .. } | Event::Closed { .. } => {
                        log.disconnected(history.tick())
                    }
                    Event::Message(Frame::Text(text)) => log.received(history.tick(), text),
                    _ => {}
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(20), welcomed)
            .await
            .expect("client welcomed in time")
            .expect("client task running");
        self.recorders.push(recorder);
        self.clients.push(client);
    }

    /// Closes every client.
    pub(crate) fn close(&mut self) {
        for client in &self.clients {
            client.close();
        }
        self.tasks.abort_all();
    }
}

impl HubClients for Clients {
    fn ids(&self) -> Vec<String> {
        self.recorders.iter().map(|r| r.log().id).collect()
    }

    fn logs(&self) -> Vec<ClientLog> {
        self.recorders.iter().map(|r| r.log()).collect()
    }
}
