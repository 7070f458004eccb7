//! The Rust client SDK: connect, receive frames, send requests and get their replies, and
//! reconnect by itself with backoff and jitter from a [`RetryPolicy`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), courier_hub::sdk::ClientError> {
//! use courier_hub::sdk::{Event, HubClient};
//!
//! let (client, mut events) = HubClient::builder("ws://127.0.0.1:8080")
//!     .client_id("alice")
//!     .token("secret")
//!     .connect();
//! let pong = client.request("ping", serde_json::Value::Null).await?;
//! assert_eq!(pong.message_type, "pong");
//! while let Some(event) = events.recv().await {
//!     if let Event::Message(frame) = event {
//!         println!("{frame:?}");
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Reconnects
//!
//! Every connection is a new *session*. Requests waiting for a reply when a session ends fail
//! with [`ClientError::ConnectionLost`] at once: a reply can only come from the session the
//! request was sent on, so nothing from an old connection ever reaches a caller after a
//! reconnect, and no callback fires twice. Requests made while disconnected wait (bounded)
//! for the next session, within their timeout.

mod command;
mod events;
mod session;
mod subscriptions;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use courier_impls::retry::{ExponentialBackoff, Jitter};
use courier_impls::websocket::WsTransport;
use courier_traits::retry::RetryPolicy;
use courier_traits::transport::{DuplexTransport, Frame};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::AppMessage;
use crate::compression::Algorithm;
use command::Command;
pub use events::{ClientError, Event};
use subscriptions::Shared;
pub use subscriptions::{
    Applied, ClientCache, Publication, SubscriptionBuilder, SubscriptionError, SubscriptionHandle,
};

/// Builds a [`HubClient`].
pub struct HubClientBuilder {
    uri: String,
    path: String,
    token: Option<String>,
    client_id: Option<String>,
    reconnect: Arc<dyn RetryPolicy>,
    request_timeout: Duration,
    read_timeout: Duration,
    transport: Option<Arc<dyn DuplexTransport>>,
    buffer: usize,
    cache_per_channel: Option<usize>,
    compress: Option<Algorithm>,
}

impl std::fmt::Debug for HubClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubClientBuilder")
            .field("uri", &self.uri)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl HubClientBuilder {
    /// The WebSocket path on the server (default `/ws`).
    pub fn path(mut self, path: &str) -> Self {
        self.path = path.to_owned();
        self
    }

    /// Token sent as `Authorization: Bearer` with the handshake.
    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    /// The client id to register under (default: the server assigns one, new per session).
    pub fn client_id(mut self, id: &str) -> Self {
        self.client_id = Some(id.to_owned());
        self
    }

    /// How to wait between reconnects (default: exponential from 200 ms to 10 s, full
    /// jitter, unlimited attempts).
    pub fn reconnect(mut self, policy: impl RetryPolicy + 'static) -> Self {
        self.reconnect = Arc::new(policy);
        self
    }

    /// How long [`HubClient::request`] waits for a reply (default 10 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// A session with no frame (pings included) for this long is treated as dead and
    /// reconnected (default 75 s: the hub pings every 30 s).
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Use this transport instead of a WebSocket to `uri` (in-memory tests).
    pub fn transport(mut self, transport: Arc<dyn DuplexTransport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Frames and events buffered toward the owner (default 256). A full buffer slows the
    /// reader, which in turn lets the server's queue for this client fill.
    pub fn buffer(mut self, frames: usize) -> Self {
        self.buffer = frames.max(1);
        self
    }

    /// Keeps the last `per_channel` publications of each subscribed channel in a
    /// [`ClientCache`] ([`HubClient::cache`]); recovered batches enter it in one step.
    pub fn cache(mut self, per_channel: usize) -> Self {
        self.cache_per_channel = Some(per_channel);
        self
    }

    /// Asks the server to gzip large messages (`compress=gzip`, see
    /// [`crate::compression`]); the client inflates them before anything else sees them.
    /// `false` asks for no compression.
    pub fn compression(mut self, gzip: bool) -> Self {
        self.compress = gzip.then_some(Algorithm::Gzip);
        self
    }

    /// Asks the server to compress large messages with `algorithm` (`compress=gzip` or
    /// `compress=brotli`); the client inflates them before anything else sees them.
    pub fn compress_with(mut self, algorithm: Algorithm) -> Self {
        self.compress = Some(algorithm);
        self
    }

    /// Starts the client; it connects in the background. Returns the handle and the events.
    ///
    /// A malformed `uri` is reported as an [`Event::Closed`] right away.
    pub fn connect(self) -> (HubClient, mpsc::Receiver<Event>) {
        let (events_tx, events_rx) = mpsc::channel(self.buffer);
        let (commands_tx, commands_rx) = mpsc::channel(self.buffer);
        let stop = CancellationToken::new();
        let subscriptions = Arc::new(Shared::new(self.cache_per_channel));
        let client = HubClient {
            subscriptions: subscriptions.clone(),
            commands: commands_tx,
            next_id: Arc::new(AtomicI64::new(1)),
            request_timeout: self.request_timeout,
            stop: stop.clone(),
            _stop_on_drop: Arc::new(stop.clone().drop_guard()),
        };
        let transport = match self.transport.clone() {
            Some(t) => Ok(t),
            None => WsTransport::new(&self.uri).map(|t| Arc::new(t) as Arc<dyn DuplexTransport>),
        };
        match transport {
            Ok(transport) => {
                let supervisor = session::Supervisor {
                    transport,
                    target: self.target(),
                    headers: self
                        .token
                        .iter()
                        .map(|t| ("Authorization".to_owned(), format!("Bearer {t}")))
                        .collect(),
                    reconnect: self.reconnect,
                    read_timeout: self.read_timeout,
                    subscribe_timeout: self.request_timeout,
                    events: events_tx,
                    commands: commands_rx,
                    stop,
                    subscriptions,
                    tagged_binary: self.compress.is_some(),
                };
                tokio::spawn(supervisor.run());
            }
            Err(e) => {
                let _ = events_tx.try_send(Event::Closed {
                    reason: e.to_string(),
                });
            }
        }
        (client, events_rx)
    }

    fn target(&self) -> String {
        let mut query = Vec::new();
        if let Some(id) = &self.client_id {
            query.push(format!("client_id={id}"));
        }
        if let Some(algorithm) = self.compress {
            query.push(format!("compress={}", algorithm.name()));
        }
        match query.is_empty() {
            true => self.path.clone(),
            false => format!("{}?{}", self.path, query.join("&")),
        }
    }
}

/// A connection to a hub that survives disconnects. Cheap to clone; the client stops when
/// [`close`](Self::close) is called or the last clone is dropped.
#[derive(Clone)]
pub struct HubClient {
    commands: mpsc::Sender<Command>,
    subscriptions: Arc<Shared>,
    next_id: Arc<AtomicI64>,
    request_timeout: Duration,
    stop: CancellationToken,
    _stop_on_drop: Arc<tokio_util::sync::DropGuard>,
}

impl std::fmt::Debug for HubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubClient").finish_non_exhaustive()
    }
}

impl HubClient {
    /// A builder for a hub at `uri` (`ws://host:port`).
    pub fn builder(uri: &str) -> HubClientBuilder {
        HubClientBuilder {
            uri: uri.to_owned(),
            path: "/ws".to_owned(),
            token: None,
            client_id: None,
            reconnect: Arc::new(
                ExponentialBackoff::new(Duration::from_millis(200))
                    .cap(Duration::from_secs(10))
                    .jitter(Jitter::Full)
                    .unlimited(),
            ),
            request_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(75),
            transport: None,
            buffer: 256,
            cache_per_channel: None,
            compress: None,
        }
    }

    /// Starts a channel subscription: set its callbacks, then
    /// [`subscribe`](SubscriptionBuilder::subscribe). Publications on subscribed channels go
    /// to the callbacks, not to the events.
    pub fn subscription_builder(&self) -> SubscriptionBuilder {
        SubscriptionBuilder::new(self.subscriptions.clone())
    }

    /// The client cache, when the client was built with
    /// [`cache`](HubClientBuilder::cache).
    pub fn cache(&self) -> Option<&ClientCache> {
        self.subscriptions.cache.as_ref()
    }

    /// Sends a frame on the current session (waiting for one while disconnected, within the
    /// request timeout).
    pub async fn send(&self, frame: Frame) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.submit(Command::Send(frame, tx), rx).await
    }

    /// Sends `{"message_type": .., "data": ..}` with a fresh `message_id` and waits for the
    /// reply with that id. An `error` reply becomes [`ClientError::Server`].
    pub async fn request(
        &self,
        message_type: &str,
        data: serde_json::Value,
    ) -> Result<AppMessage, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let message = AppMessage::new(id, message_type, data);
        let (tx, rx) = oneshot::channel();
        let reply = self.submit(Command::Request(message, tx), rx).await?;
        if reply.message_type == "error" {
            return Err(ClientError::Server {
                code: reply.data["code"].as_str().unwrap_or_default().to_owned(),
                message: reply.data["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
        Ok(reply)
    }

    async fn submit<T>(
        &self,
        command: Command,
        reply: oneshot::Receiver<Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        let timeout = self.request_timeout;
        let work = async {
            self.commands
                .send(command)
                .await
                .map_err(|_| ClientError::Closed)?;
            reply.await.map_err(|_| ClientError::ConnectionLost)?
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
    }

    /// Closes the connection (code 1000) and stops reconnecting.
    pub fn close(&self) {
        self.stop.cancel();
    }
}
