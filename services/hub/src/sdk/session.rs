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
    /// How long a subscribe may go unanswered before it is retried (the request timeout).
    pub(super) subscribe_timeout: Duration,
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
    /// Our own subscribes in flight (negative ids, apart from the owner's).
    inflight: HashMap<i64, Inflight>,
    /// Patterns whose subscribe failed transiently, waiting for their next attempt.
    retrying: HashMap<String, Backoff>,
    next_id: i64,
}

struct Inflight {
    pattern: String,
    /// Unanswered by then, the subscribe counts as failed transiently.
    deadline: Instant,
}

/// Where the retries of one pattern's subscribe stand (the reconnect policy decides).
struct Backoff {
    attempt: u32,
    failing_since: Instant,
    previous_delay: Option<Duration>,
    due: Instant,
}

impl SessionSubscriptions {
    /// When the session must act on a subscribe without any frame: the next retry due, or
    /// the first unanswered subscribe's deadline.
    fn next_wakeup(&self) -> Option<Instant> {
        // A pattern asked again keeps its backoff until answered, but waits for its reply,
        // not for its due time (then past).
        let waiting = self
            .retrying
            .iter()
            .filter(|(p, _)| !self.held.contains(*p));
        let deadlines = self.inflight.values().map(|i| i.deadline);
        waiting.map(|(_, r)| r.due).chain(deadlines).min()
    }
}

/// Whether a subscribe's `error` reply says trying again may succeed (the hub sets
/// `retryable` from its error's class: a storage or bus outage is, a refusal is not).
fn retryable(reply: &AppMessage) -> bool {
    reply.data["retryable"].as_bool().unwrap_or(false)
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
            let wakeup = subs.next_wakeup();
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
                () = sleep_until_some(wakeup), if wakeup.is_some() => {
                    self.expire_unanswered(&mut subs);
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

    /// Subscribes to the patterns wanted and not held (unless waiting for a retry),
    /// unsubscribes from those held and no longer wanted.
    async fn sync(
        &self,
        subs: &mut SessionSubscriptions,
        connection: &mut DuplexConnection,
    ) -> Result<(), String> {
        let desired = self.subscriptions.desired();
        let now = Instant::now();
        subs.retrying.retain(|pattern, _| desired.contains(pattern));
        let mut requests = Vec::new();
        let mut held = HashSet::new();
        for pattern in desired {
            if subs.held.contains(&pattern) {
                held.insert(pattern);
                continue;
            }
            if subs.retrying.get(&pattern).is_some_and(|r| r.due > now) {
                continue;
            }
            subs.next_id -= 1;
            let deadline = now + self.subscribe_timeout;
            let data = self.subscriptions.subscribe_data(&pattern);
            requests.push(AppMessage::new(subs.next_id, "subscribe", data));
            subs.inflight.insert(
                subs.next_id,
                Inflight {
                    pattern: pattern.clone(),
                    deadline,
                },
            );
            held.insert(pattern);
        }
        for pattern in subs.held.difference(&held) {
            subs.next_id -= 1;
            let data = serde_json::json!({ "channel": pattern });
            requests.push(AppMessage::new(subs.next_id, "unsubscribe", data));
        }
        subs.held = held;
        for request in requests {
            connection
                .sender
                .send(Frame::Text(request.to_json()))
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Subscribes unanswered past their deadline fail transiently (a late answer is
    /// ignored: its id is no longer in flight).
    fn expire_unanswered(&self, subs: &mut SessionSubscriptions) {
        let now = Instant::now();
        let expired: Vec<i64> = subs
            .inflight
            .iter()
            .filter(|(_, i)| i.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let Some(inflight) = subs.inflight.remove(&id) else {
                continue;
            };
            if subs.held.remove(&inflight.pattern) {
                let message = format!("no reply within {:?}", self.subscribe_timeout);
                self.retry_later(subs, inflight.pattern, "timeout", &message);
            }
        }
    }

    /// Schedules the next subscribe of `pattern` after a transient failure, with the
    /// reconnect policy's backoff; when the policy gives up, the failure goes to `on_error`.
    fn retry_later(
        &self,
        subs: &mut SessionSubscriptions,
        pattern: String,
        code: &str,
        message: &str,
    ) {
        let now = Instant::now();
        let backoff = subs.retrying.entry(pattern.clone()).or_insert(Backoff {
            attempt: 0,
            failing_since: now,
            previous_delay: None,
            due: now,
        });
        backoff.attempt += 1;
        let ctx = RetryContext {
            attempt: backoff.attempt,
            elapsed: backoff.failing_since.elapsed(),
            previous_delay: backoff.previous_delay,
            class: courier_traits::error::ErrorClass::TRANSIENT,
        };
        match self.reconnect.decide(&ctx) {
            RetryDecision::RetryAfter(delay) => {
                backoff.previous_delay = Some(delay);
                backoff.due = now + delay;
            }
            RetryDecision::GiveUp(why) => {
                subs.retrying.remove(&pattern);
                let message = format!("{message} (not retrying: {why})");
                self.subscriptions.refused(&pattern, code, &message);
            }
        }
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
                if let Some(Inflight { pattern, .. }) = subs.inflight.remove(&message.message_id)
                    && subs.held.contains(&pattern)
                {
                    if message.message_type == "subscribed" {
                        subs.retrying.remove(&pattern);
                        self.subscriptions.applied(&pattern, &message);
                    } else {
                        subs.held.remove(&pattern);
                        let code = message.data["code"].as_str().unwrap_or_default();
                        let text = message.data["message"].as_str().unwrap_or_default();
                        if retryable(&message) {
                            self.retry_later(subs, pattern, code, text);
                        } else {
                            subs.retrying.remove(&pattern);
                            self.subscriptions.refused(&pattern, code, text);
                        }
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

/// Sleeps until `when` (callers select on it only when it is `Some`).
async fn sleep_until_some(when: Option<Instant>) {
    match when {
        Some(when) => tokio::time::sleep_until(when).await,
        None => std::future::pending().await,
    }
}
