//! [`WsTransport`]: a [`DuplexTransport`] over WebSocket (tokio-tungstenite), `ws://` only.
//!
//! Each connection is split into a [`FrameSender`] and a [`FrameReceiver`] so a reader and a
//! writer task can drive it. Pings from the server are answered by tungstenite itself (the
//! pong goes out with the next read or write), so a client that only reads stays alive.

use std::time::Duration;

use async_trait::async_trait;
use courier_traits::transport::{
    DuplexConnection, DuplexTransport, Frame, FrameReceiver, FrameSender, Headers, TransportError,
};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Largest frame accepted from the server by default.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 << 20;

/// Opens WebSocket connections under one base URL (`ws://host:port[/prefix]`).
///
/// ```no_run
/// # async fn demo() -> Result<(), courier_traits::TransportError> {
/// use courier_impls::websocket::WsTransport;
/// use courier_traits::transport::{DuplexTransport, Frame};
///
/// let ws = WsTransport::new("ws://127.0.0.1:8080")?;
/// let mut conn = ws.connect("/ws?client_id=alice", Vec::new()).await?;
/// conn.sender.send(Frame::Text("hello".into())).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct WsTransport {
    base: String,
    connect_timeout: Duration,
    max_frame_bytes: usize,
}

impl WsTransport {
    /// A transport for `base_url` (`ws://host:port[/prefix]`).
    pub fn new(base_url: &str) -> Result<WsTransport, TransportError> {
        let base = base_url.trim_end_matches('/').to_owned();
        let rest = base.strip_prefix("ws://").ok_or_else(|| {
            TransportError::Protocol(format!(
                "base URL {base_url:?} must start with ws:// (wss:// is not built in; use a TLS proxy)"
            ))
        })?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(TransportError::Protocol(format!(
                "base URL {base_url:?} has no host"
            )));
        }
        Ok(WsTransport {
            base,
            connect_timeout: Duration::from_secs(10),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        })
    }

    /// How long the TCP connect plus the handshake may take (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Largest message accepted from the server (default 16 MiB).
    pub fn max_frame_bytes(mut self, limit: usize) -> Self {
        self.max_frame_bytes = limit;
        self
    }
}

#[async_trait]
impl DuplexTransport for WsTransport {
    async fn connect(
        &self,
        target: &str,
        headers: Headers,
    ) -> Result<DuplexConnection, TransportError> {
        let url = format!("{}{}", self.base, target);
        let connect_error = |message: String| TransportError::Connect {
            target: url.clone(),
            message,
            source: None,
        };
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| connect_error(e.to_string()))?;
        for (name, value) in headers {
            let name: tungstenite::http::HeaderName = name
                .parse()
                .map_err(|_| connect_error(format!("bad header name {name:?}")))?;
            let value = HeaderValue::from_str(&value)
                .map_err(|_| connect_error(format!("bad value for header {name}")))?;
            request.headers_mut().append(name, value);
        }
        let config = tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(self.max_frame_bytes))
            .max_frame_size(Some(self.max_frame_bytes));
        let handshake = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
        let (socket, _response) = match tokio::time::timeout(self.connect_timeout, handshake).await
        {
            Err(_) => return Err(TransportError::Timeout(self.connect_timeout)),
            Ok(Err(tungstenite::Error::Http(response))) => {
                let status = response.status().as_u16();
                let message = response
                    .body()
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                return Err(TransportError::Status {
                    status,
                    message,
                    retry_after: None,
                });
            }
            Ok(Err(e)) => return Err(connect_error(e.to_string())),
            Ok(Ok(pair)) => pair,
        };
        let (sink, stream) = socket.split();
        Ok(DuplexConnection {
            sender: Box::new(WsSender {
                sink,
                closed: false,
            }),
            receiver: Box::new(WsReceiver { stream }),
        })
    }
}

struct WsSender {
    sink: SplitSink<Socket, Message>,
    closed: bool,
}

#[async_trait]
impl FrameSender for WsSender {
    async fn send(&mut self, frame: Frame) -> Result<(), TransportError> {
        if self.closed {
            return Err(TransportError::Closed);
        }
        let message = match frame {
            Frame::Text(text) => Message::Text(text.into()),
            Frame::Binary(bytes) => Message::Binary(bytes),
            Frame::Ping(bytes) => Message::Ping(bytes),
            Frame::Pong(bytes) => Message::Pong(bytes),
        };
        self.sink.send(message).await.map_err(ws_error)
    }

    async fn close(&mut self, code: u16, reason: &str) -> Result<(), TransportError> {
        if std::mem::replace(&mut self.closed, true) {
            return Ok(());
        }
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_owned().into(),
        };
        match self.sink.send(Message::Close(Some(frame))).await {
            Ok(())
            | Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                Ok(())
            }
            Err(e) => Err(ws_error(e)),
        }
    }
}

struct WsReceiver {
    stream: SplitStream<Socket>,
}

#[async_trait]
impl FrameReceiver for WsReceiver {
    async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        // SplitStream::next is cancel-safe: a frame is only taken out when it is returned.
        loop {
            return match self.stream.next().await {
                None => Ok(None),
                Some(Err(tungstenite::Error::ConnectionClosed)) => Ok(None),
                Some(Err(e)) => Err(ws_error(e)),
                Some(Ok(Message::Text(text))) => Ok(Some(Frame::Text(text.as_str().to_owned()))),
                Some(Ok(Message::Binary(bytes))) => Ok(Some(Frame::Binary(bytes))),
                Some(Ok(Message::Ping(bytes))) => Ok(Some(Frame::Ping(bytes))),
                Some(Ok(Message::Pong(bytes))) => Ok(Some(Frame::Pong(bytes))),
                Some(Ok(Message::Close(_))) => Ok(None),
                Some(Ok(Message::Frame(_))) => continue,
            };
        }
    }
}

fn ws_error(e: tungstenite::Error) -> TransportError {
    match e {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            TransportError::Closed
        }
        tungstenite::Error::Io(io) => TransportError::Io(io),
        other => TransportError::Protocol(other.to_string()),
    }
}
