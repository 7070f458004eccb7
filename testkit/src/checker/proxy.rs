//! A loopback TCP proxy between clients and a service node that can cut every open connection
//! at once: requests in flight then end with a broken connection, as after a network failure.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// A running proxy; it stops, with every connection it carries, when dropped.
pub struct Proxy {
    addr: SocketAddr,
    cut: watch::Sender<u64>,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards each connection to `upstream`. A client
    /// whose upstream is down sees its connection closed.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (cut, _) = watch::channel(0u64);
        let accepted = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(accept_loop(
            listener,
            upstream,
            cut.clone(),
            accepted.clone(),
        ));
        Ok(Proxy {
            addr,
            cut,
            accepted,
            task,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every connection open now; new connections are accepted as before.
    pub fn cut_all(&self) {
        self.cut.send_modify(|generation| *generation += 1);
    }

    /// How many connections it has accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    cut: watch::Sender<u64>,
    accepted: Arc<AtomicUsize>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            incoming = listener.accept() => {
                let Ok((client, _)) = incoming else { continue };
                accepted.fetch_add(1, Ordering::Relaxed);
                let mut cut_seen = cut.subscribe();
                cut_seen.mark_unchanged();
                connections.spawn(async move {
                    tokio::select! {
                        () = forward(client, upstream) => {}
                        _ = cut_seen.changed() => {}
                    }
                });
            }
            // Reap finished connections so the set does not grow with the run.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr) {
    let _ = client.set_nodelay(true);
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn forwards_and_cuts_open_connections() {
        let echo = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let upstream = echo.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = echo.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 || socket.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let proxy = Proxy::start(upstream).await.expect("proxy");
        let mut client = TcpStream::connect(proxy.addr()).await.expect("connect");
        client.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        client.read_exact(&mut buf).await.expect("echo");
        assert_eq!(&buf, b"ping");

        proxy.cut_all();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            client.read_to_end(&mut rest),
        )
        .await
        .expect("the cut closes the connection");
        assert!(read.is_err() || rest.is_empty(), "{read:?}");

        // New connections still work after a cut.
        let mut again = TcpStream::connect(proxy.addr()).await.expect("connect");
        again.write_all(b"pong").await.expect("write");
        again.read_exact(&mut buf).await.expect("echo");
        assert_eq!(&buf, b"pong");
        assert_eq!(proxy.accepted(), 2);
        server.abort();
    }
}
