//! In-process transports for tests: SDKs and servers written against the transport traits run
//! here with no sockets.
//!
//! * [`duplex_pair`]: two connected [`DuplexConnection`]s; what one sends, the other receives.
//! * [`InMemoryConnector`] + [`InMemoryAcceptor`]: a [`DuplexTransport`] whose server side
//!   accepts connections in process (the hub's connection fake).
//! * [`HandlerTransport`]: a [`RequestTransport`] answered by an async closure.

use std::future::Future;

use async_trait::async_trait;
use courier_traits::transport::{
    DuplexConnection, DuplexTransport, Frame, FrameReceiver, FrameSender, Headers, Request,
    RequestTransport, Response, TransportError,
};
use tokio::sync::mpsc;

struct ChannelSender {
    tx: Option<mpsc::Sender<Frame>>,
}

#[async_trait]
impl FrameSender for ChannelSender {
    async fn send(&mut self, frame: Frame) -> Result<(), TransportError> {
        let tx = self.tx.as_ref().ok_or(TransportError::Closed)?;
        tx.send(frame).await.map_err(|_| TransportError::Closed)
    }

    async fn close(&mut self, _code: u16, _reason: &str) -> Result<(), TransportError> {
        // Dropping the sender ends the peer's stream once it has drained what was sent.
        self.tx = None;
        Ok(())
    }
}

struct ChannelReceiver {
    rx: mpsc::Receiver<Frame>,
}

#[async_trait]
impl FrameReceiver for ChannelReceiver {
    async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        // mpsc::Receiver::recv is cancel-safe, so this is too.
        Ok(self.rx.recv().await)
    }
}

/// Two connected duplex connections with `capacity` frames of buffer in each direction
/// (a full buffer makes `send` wait: backpressure as on a socket).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), courier_traits::TransportError> {
/// use courier_impls::memory::duplex_pair;
/// use courier_traits::transport::Frame;
///
/// let (mut client, mut server) = duplex_pair(8);
/// client.sender.send(Frame::Text("ping".into())).await?;
/// assert_eq!(server.receiver.recv().await?, Some(Frame::Text("ping".into())));
/// client.sender.close(1000, "bye").await?;
/// assert_eq!(server.receiver.recv().await?, None);
/// # Ok(()) }
/// ```
pub fn duplex_pair(capacity: usize) -> (DuplexConnection, DuplexConnection) {
    let (a_tx, a_rx) = mpsc::channel(capacity.max(1));
    let (b_tx, b_rx) = mpsc::channel(capacity.max(1));
    let a = DuplexConnection {
        sender: Box::new(ChannelSender { tx: Some(a_tx) }),
        receiver: Box::new(ChannelReceiver { rx: b_rx }),
    };
    let b = DuplexConnection {
        sender: Box::new(ChannelSender { tx: Some(b_tx) }),
        receiver: Box::new(ChannelReceiver { rx: a_rx }),
    };
    (a, b)
}

/// A connection request as the in-process server side sees it.
#[derive(Debug)]
pub struct AcceptedConnection {
    /// The target the client connected to (path and query).
    pub target: String,
    /// The handshake headers the client sent.
    pub headers: Headers,
    /// The server's end of the connection.
    pub connection: DuplexConnection,
}

/// The client side of an in-process duplex transport; see [`in_memory_duplex`].
#[derive(Clone)]
pub struct InMemoryConnector {
    accept_tx: mpsc::Sender<AcceptedConnection>,
    capacity: usize,
}

/// The server side of an in-process duplex transport; see [`in_memory_duplex`].
pub struct InMemoryAcceptor {
    accept_rx: mpsc::Receiver<AcceptedConnection>,
}

impl InMemoryAcceptor {
    /// The next connection; `None` once every connector is gone.
    pub async fn accept(&mut self) -> Option<AcceptedConnection> {
        self.accept_rx.recv().await
    }
}

/// A [`DuplexTransport`] (the connector) whose connections arrive at the acceptor, each with
/// `capacity` frames of buffer per direction. Up to 64 connections may wait to be accepted.
pub fn in_memory_duplex(capacity: usize) -> (InMemoryConnector, InMemoryAcceptor) {
    let (accept_tx, accept_rx) = mpsc::channel(64);
    (
        InMemoryConnector {
            accept_tx,
            capacity,
        },
        InMemoryAcceptor { accept_rx },
    )
}

#[async_trait]
impl DuplexTransport for InMemoryConnector {
    async fn connect(
        &self,
        target: &str,
        headers: Headers,
    ) -> Result<DuplexConnection, TransportError> {
        let (client, server) = duplex_pair(self.capacity);
        let accepted = AcceptedConnection {
            target: target.to_owned(),
            headers,
            connection: server,
        };
        self.accept_tx
            .send(accepted)
            .await
            .map_err(|_| TransportError::Connect {
                target: target.to_owned(),
                message: "the in-memory acceptor is gone".into(),
                source: None,
            })?;
        Ok(client)
    }
}

/// A [`RequestTransport`] whose responses come from an async handler, for unit tests of SDKs.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), courier_traits::TransportError> {
/// use courier_impls::memory::HandlerTransport;
/// use courier_traits::transport::{Method, Request, RequestTransport, Response, ResponseBody};
///
/// let transport = HandlerTransport::new(|req: Request| async move {
///     let status = if req.target == "/health" { 200 } else { 404 };
///     Ok(Response { status, headers: vec![], body: ResponseBody::Full("ok".into()) })
/// });
/// assert_eq!(transport.send(Request::new(Method::Get, "/health")).await?.status, 200);
/// # Ok(()) }
/// ```
pub struct HandlerTransport<F> {
    handler: F,
}

impl<F, Fut> HandlerTransport<F>
where
    F: Fn(Request) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Response, TransportError>> + Send,
{
    /// Answers every request with `handler`.
    pub fn new(handler: F) -> Self {
        HandlerTransport { handler }
    }
}

#[async_trait]
impl<F, Fut> RequestTransport for HandlerTransport<F>
where
    F: Fn(Request) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Response, TransportError>> + Send,
{
    async fn send(&self, request: Request) -> Result<Response, TransportError> {
        (self.handler)(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connector_hands_connections_to_the_acceptor() {
        let (connector, mut acceptor) = in_memory_duplex(4);
        let server = tokio::spawn(async move {
            let mut accepted = acceptor.accept().await.expect("a connection");
            assert_eq!(accepted.target, "/ws?client=7");
            assert_eq!(
                courier_traits::transport::header(&accepted.headers, "authorization"),
                Some("Bearer t")
            );
            // Echo one frame back, then close.
            let frame = accepted
                .connection
                .receiver
                .recv()
                .await
                .expect("recv")
                .expect("a frame");
            accepted.connection.sender.send(frame).await.expect("send");
            accepted
                .connection
                .sender
                .close(1000, "done")
                .await
                .expect("close");
        });
        let mut client = connector
            .connect(
                "/ws?client=7",
                vec![("Authorization".into(), "Bearer t".into())],
            )
            .await
            .expect("connect");
        client
            .sender
            .send(Frame::Binary(bytes::Bytes::from_static(b"\x01\x02")))
            .await
            .expect("send");
        assert_eq!(
            client.receiver.recv().await.expect("recv"),
            Some(Frame::Binary(bytes::Bytes::from_static(b"\x01\x02")))
        );
        assert_eq!(
            client.receiver.recv().await.expect("recv"),
            None,
            "closed by the server"
        );
        server.await.expect("server task");
    }

    #[tokio::test]
    async fn send_after_close_or_peer_gone_is_closed() {
        let (mut a, b) = duplex_pair(1);
        a.sender.close(1000, "").await.expect("close");
        assert!(matches!(
            a.sender.send(Frame::Text("x".into())).await,
            Err(TransportError::Closed)
        ));
        let (mut c, d) = duplex_pair(1);
        drop(d);
        assert!(matches!(
            c.sender.send(Frame::Text("x".into())).await,
            Err(TransportError::Closed)
        ));
        drop(b);
    }

    #[tokio::test]
    async fn full_buffer_applies_backpressure() {
        let (mut a, mut b) = duplex_pair(1);
        a.sender.send(Frame::Text("1".into())).await.expect("fits");
        let second = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            a.sender.send(Frame::Text("2".into())),
        )
        .await;
        assert!(
            second.is_err(),
            "send waits while the peer's buffer is full"
        );
        assert_eq!(
            b.receiver.recv().await.expect("recv"),
            Some(Frame::Text("1".into()))
        );
        a.sender
            .send(Frame::Text("2".into()))
            .await
            .expect("room again");
    }

    #[tokio::test]
    async fn connect_fails_when_the_acceptor_is_gone() {
        let (connector, acceptor) = in_memory_duplex(1);
        drop(acceptor);
        let err = connector
            .connect("/ws", vec![])
            .await
            .expect_err("no server");
        assert!(courier_traits::Classify::is_retryable(&err));
    }
}
