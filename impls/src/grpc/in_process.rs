//! gRPC without sockets: HTTP/2 over in-memory duplex pipes, for tests.
//!
//! A server [`listen`](InProcessNetwork::listen)s on a URL and serves the
//! [`InProcessListener`] it gets (a stream of connections, as tonic's
//! `Server::serve_with_incoming` takes); [`GrpcChannels::in_process`](super::GrpcChannels::in_process)
//! dials through the same network. Everything else, tonic's HTTP/2, codecs, deadlines and
//! status handling, is the real thing.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::sync::mpsc;
use tonic::codegen::http::Uri;

use super::{GrpcError, normalise_url};

/// Bytes buffered in each direction of an in-process connection.
const PIPE_BUFFER: usize = 64 * 1024;
/// Connections a listener holds before its server accepts them; a dialler waits beyond that.
const ACCEPT_BACKLOG: usize = 16;

/// A set of in-process gRPC servers addressed by URL. Cheap to clone; clones share the set.
#[derive(Clone, Debug, Default)]
pub struct InProcessNetwork {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    listeners: Mutex<HashMap<String, mpsc::Sender<InProcessStream>>>,
    connections: AtomicU64,
}

impl InProcessNetwork {
    /// An empty network.
    pub fn new() -> InProcessNetwork {
        InProcessNetwork::default()
    }

    /// Starts listening on `url` (normalised as channels normalise it). Connections to it
    /// arrive on the returned listener; dropping the listener makes later connects fail with
    /// "connection refused", as a stopped server does.
    ///
    /// Errors: [`GrpcError::InvalidUrl`] for a bad URL or one a live listener already has.
    pub fn listen(&self, url: &str) -> Result<InProcessListener, GrpcError> {
        let key = normalise_url(url)?;
        let (sender, receiver) = mpsc::channel(ACCEPT_BACKLOG);
        let mut listeners = self
            .inner
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if listeners.get(&key).is_some_and(|s| !s.is_closed()) {
            return Err(GrpcError::invalid_url(url, "already listened on"));
        }
        listeners.insert(key, sender);
        Ok(InProcessListener { receiver })
    }

    /// How many connections have been opened through this network (a channel opens one per
    /// server, and again after its connection broke).
    pub fn connections(&self) -> u64 {
        self.inner.connections.load(Ordering::Relaxed)
    }

    /// Opens a connection to the server listening on `uri`.
    pub(crate) async fn connect(&self, uri: &Uri) -> io::Result<InProcessStream> {
        let key = normalise_url(&uri.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let sender = self
            .inner
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        let refused = || {
            io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("no in-process server listens on {key}"),
            )
        };
        let sender = sender.ok_or_else(refused)?;
        let (client, server) = tokio::io::duplex(PIPE_BUFFER);
        sender
            .send(InProcessStream(server))
            .await
            .map_err(|_| refused())?;
        self.inner.connections.fetch_add(1, Ordering::Relaxed);
        Ok(InProcessStream(client))
    }
}

/// The connections made to one in-process URL, for a server to serve (a
/// `Stream<Item = io::Result<InProcessStream>>`, as `Server::serve_with_incoming` takes). The
/// stream ends only when the network is dropped; dropping the listener refuses new connects.
#[derive(Debug)]
pub struct InProcessListener {
    receiver: mpsc::Receiver<InProcessStream>,
}

impl Stream for InProcessListener {
    type Item = io::Result<InProcessStream>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx).map(|next| next.map(Ok))
    }
}

/// One end of an in-process connection.
#[derive(Debug)]
pub struct InProcessStream(DuplexStream);

impl AsyncRead for InProcessStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for InProcessStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// tonic's server asks each connection who the peer is; an in-process peer has no address.
impl tonic::transport::server::Connected for InProcessStream {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}
