//! The supervisor task: connect, run a session, and reconnect with the policy.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use courier_traits::error::Classify;
use courier_traits::retry::{RetryContext, RetryDecision, RetryPolicy};
use courier_traits::transport::{DuplexConnection, DuplexTransport, Frame, Headers};
use tokio::sync::{mpsc, oneshot};
// The runtime's clock (not std's): reconnect backoff follows tokio's time, which tests can
// pause.
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::command::Command;
use super::events::{ClientError, Event};
use super::subscriptions::Shared;
use crate::AppMessage;

pub(super) struct Supervisor {
    pub(super) transport: Arc<dyn DuplexTransport>,
    pub(super) target: String,
    pub(super) headers: Headers,
    pub(super) reconnect: Arc<dyn RetryPolicy>,
    pub(super) read_timeout: Duration,
    pub(super) events: mpsc::Sender<Event>,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) stop: CancellationToken,
    pub(super) subscriptions: Arc<Shared>,
    /// Compression was asked for: every binary frame from the server carries a tag.
    pub(super) tagged_binary: bool,
}

/// The server-side subscriptions of one session.
#[derive(Default)]
struct SessionSubscriptions {
    /// Patterns subscribed (or being subscribed) on the server in this session.
    held: HashSet<String>,
    /// Our own requests in flight (negative ids, apart from the owner's), by pattern.
    inflight: HashMap<i64, String>,
    next_id: i64,
}

type Pending = HashMap<i64, oneshot::Sender<Result<AppMessage, ClientError>>>;

impl Supervisor {
    pub(super) async fn run(mut self) {
        let mut attempt = 0u32;
        let mut failing_since = Instant::now();
        let mut previous_delay = None;
        loop {
            let connected = tokio::select! {
                () = self.stop.cancelled() => break,
                c = self.transport.connect(&self.target, self.headers.clone()) => c,
            };
            let class = match connected {
                Ok(connection) => {
                    attempt = 0;
                    previous_delay = None;
                    let reason = self.session(connection).await;
                    if self.stop.is_cancelled() {
                        break;
                    }
                    self.emit(Event::Disconnected { reason }).await;
                    failing_since = Instant::now();
                    courier_traits::error::ErrorClass::TRANSIENT
                }
                Err(e) => {
                    if attempt == 0 {
                        failing_since = Instant::now();
                    }
                    self.emit(Event::Disconnected {
                        reason: e.to_string(),
                    })
                    .await;
                    e.class()
                }
            };
            attempt += 1;
            let ctx = RetryContext {
                attempt,
                elapsed: failing_since.elapsed(),
                previous_delay,
                class,
            };
            let delay = match self.reconnect.decide(&ctx) {
                RetryDecision::RetryAfter(delay) => delay,
                RetryDecision::GiveUp(why) => {
                    self.emit(Event::Closed {
                        reason: format!("not reconnecting: {why}"),
                    })
                    .await;
                    return;
                }
            };
            previous_delay = Some(delay);
            self.emit(Event::Reconnecting { attempt, delay }).await;
            tokio::select! {
                () = self.stop.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
        self.emit(Event::Closed {
            reason: "closed by the client".into(),
        })
        .await;
    }

    async fn emit(&self, event: Event) {
        // The owner may have dropped the receiver; the client keeps working for requests.
        let _ = self.events.send(event).await;
    }

    /// Runs one connection until it ends; returns why. Pending requests of this session are
    /// failed when it ends (their oneshots are dropped with the map).
    async fn session(&mut self, mut connection: DuplexConnection) -> String {
        let mut pending: Pending = HashMap::new();
        let mut subs = SessionSubscriptions::default();
        // A new session holds nothing on the server: subscribe (and recover) everything.
        if let Err(reason) = self.sync(&mut subs, &mut connection).await {
            return reason;
        }
        let reason = loop {
            tokio::select! {
                () = self.stop.cancelled() => {
                    let _ = connection.sender.close(1000, "client closed").await;
                    break "closed by the client".to_owned();
                }
                frame = tokio::time::timeout(self.read_timeout, connection.receiver.recv()) => {
                    match frame {
                        Err(_) => break format!("no frame from the server for {:?}", self.read_timeout),
                        Ok(Err(e)) => break e.to_string(),
                        Ok(Ok(None)) => break "server closed the connection".to_owned(),
                        Ok(Ok(Some(frame))) => self.route(frame, &mut pending, &mut subs, &mut connection).await,
                    }
                }
                () = self.subscriptions.changed.notified() => {
                    if let Err(reason) = self.sync(&mut subs, &mut connection).await {
                        break reason;
                    }
                }
                command = self.commands.recv() => {
                    let Some(command) = command else {
                        let _ = connection.sender.close(1000, "client dropped").await;
                        self.stop.cancel();
                        break "client dropped".to_owned();
                    };
                    if let Err(reason) = self.execute(command, &mut pending, &mut connection).await {
                        break reason;
                    }
                }
            }
        };
        for (_, waiter) in pending.drain() {
            let _ = waiter.send(Err(ClientError::ConnectionLost));
        }
        reason
    }

    async fn execute(
        &self,
        command: Command,
        pending: &mut Pending,
        connection: &mut DuplexConnection,
    ) -> Result<(), String> {
        match command {
            Command::Send(frame, done) => {
                let result = connection.sender.send(frame).await;
                let failed = result.as_ref().err().map(ToString::to_string);
                let _ = done.send(result.map_err(ClientError::from));
                failed.map_or(Ok(()), Err)
            }
            Command::Request(message, reply) => {
                let id = message.message_id;
                match connection.sender.send(Frame::Text(message.to_json())).await {
                    Ok(()) => {
                        pending.insert(id, reply);
                        Ok(())
                    }
                    Err(e) => {
                        let reason = e.to_string();
                        let _ = reply.send(Err(ClientError::ConnectionLost));
                        Err(reason)
                    }
                }
            }
        }
    }

    /// Subscribes to the patterns wanted and not held, unsubscribes from those held and no
    /// longer wanted.
    async fn sync(
        &self,
        subs: &mut SessionSubscriptions,
        connection: &mut DuplexConnection,
    ) -> Result<(), String> {
        let desired = self.subscriptions.desired();
        let mut requests = Vec::new();
        for pattern in desired.difference(&subs.held) {
            subs.next_id -= 1;
            subs.inflight.insert(subs.next_id, pattern.clone());
            let data = self.subscriptions.subscribe_data(pattern);
            requests.push(AppMessage::new(subs.next_id, "subscribe", data));
        }
        for pattern in subs.held.difference(&desired) {
            subs.next_id -= 1;
            let data = serde_json::json!({ "channel": pattern });
            requests.push(AppMessage::new(subs.next_id, "unsubscribe", data));
        }
        subs.held = desired;
        for request in requests {
            connection
                .sender
                .send(Frame::Text(request.to_json()))
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    async fn route(
        &self,
        frame: Frame,
        pending: &mut Pending,
        subs: &mut SessionSubscriptions,
        connection: &mut DuplexConnection,
    ) {
        let frame = match frame {
            Frame::Binary(bytes) if self.tagged_binary => {
                match crate::compression::decode(&bytes) {
                    Ok(frame) => frame,
                    Err(e) => {
                        tracing::warn!(error = %e, "undecodable server message dropped");
                        return;
                    }
                }
            }
            other => other,
        };
        let text = match &frame {
            Frame::Text(text) => text.as_str(),
            Frame::Ping(payload) => {
                // Transports that do not answer pings themselves (the in-memory one) get it here.
                let _ = connection.sender.send(Frame::Pong(payload.clone())).await;
                return;
            }
            Frame::Pong(_) => return,
            Frame::Binary(_) => {
                self.emit(Event::Message(frame)).await;
                return;
            }
        };
        if text.starts_with('{')
            && let Ok(message) = serde_json::from_str::<AppMessage>(text)
        {
            if message.message_type == "welcome" {
                self.emit(Event::Connected {
                    client_id: message.data["client_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    node: message.data["node"].as_str().unwrap_or_default().to_owned(),
                })
                .await;
                return;
            }
            if message.message_id < 0 {
                // Replies to our own subscribes; unsubscribes need no answer.
                if let Some(pattern) = subs.inflight.remove(&message.message_id)
                    && subs.held.contains(&pattern)
                {
                    if message.message_type == "subscribed" {
                        self.subscriptions.applied(&pattern, &message);
                    } else {
                        subs.held.remove(&pattern);
                        self.subscriptions.failed(&pattern, &message);
                    }
                }
                return;
            }
            if self.subscriptions.publication(&message) {
                return;
            }
            if let Some(waiter) = pending.remove(&message.message_id) {
                let _ = waiter.send(Ok(message));
                return;
            }
        }
        self.emit(Event::Message(frame)).await;
    }
}
