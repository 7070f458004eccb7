//! A streams server on a free loopback port, for the tests that write HTTP/1.1 to it byte by
//! byte.

use std::net::SocketAddr;
use std::sync::Arc;

use courier_impls::memory::MemoryStreamStorage;
use courier_streams::server::{ServerConfig, StreamsServer};
use courier_traits::storage::StreamStorage;
use tokio::net::TcpListener;

/// A server on loopback; it stops when dropped (its task is aborted).
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A server with the default configuration.
pub(crate) async fn server() -> Server {
    served(ServerConfig::default()).await
}

/// A server with `config`.
pub(crate) async fn served(config: ServerConfig) -> Server {
    served_over(Arc::new(MemoryStreamStorage::new()), config).await
}

/// A server over `storage` with `config`.
pub(crate) async fn served_over(storage: Arc<dyn StreamStorage>, config: ServerConfig) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = StreamsServer::new(storage, config);
    let task = tokio::spawn(server.serve(listener, std::future::pending()));
    Server { addr, task }
}
