//! A broker node on a loopback TCP port over memory storage, stopped when dropped.

use std::sync::Arc;

use courier_broker::directory::NodeUrls;
use courier_broker::server::{BrokerConfig, BrokerServer};
use courier_impls::memory::MemoryStreamStorage;
use tokio::sync::oneshot;

pub struct Node {
    /// The URL it advertises (`http://` or `https://127.0.0.1:<port>`).
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
}

impl Node {
    /// Binds a port, sets `config`'s URLs to it with `scheme`, opens and serves.
    pub async fn start(scheme: &str, configure: impl FnOnce(&mut BrokerConfig)) -> Node {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let url = format!("{scheme}://127.0.0.1:{port}");
        let mut config = BrokerConfig::new(NodeUrls::same(&url).expect("url"));
        configure(&mut config);
        let server = BrokerServer::open(Arc::new(MemoryStreamStorage::new()), config)
            .await
            .expect("open");
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(async move {
            let _ = server
                .serve(listener, async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Node {
            url,
            stop: Some(stop),
            served: Some(served),
        }
    }

    /// Stops serving and waits for the drain.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), served).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(served) = self.served.take() {
            served.abort();
        }
    }
}
