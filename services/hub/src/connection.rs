//! One client connection: its bounded outbound queue, a writer task (queue, pings, write
//! timeout) and a reader task (read deadline, dispatcher). Any end stops both.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use courier_traits::transport::{self, FrameReceiver, FrameSender};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::dispatcher::RequestContext;
use crate::hub::HubInner;
use crate::metrics::Metrics;
use crate::{Frame, HubError};

/// Why a connection ended; sent as the WebSocket close code and reason where possible.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed or the socket broke.
    PeerGone,
    /// A newer connection registered the same client id.
    Replaced,
    /// The client read too slowly (queue full past the grace period, or a write timed out).
    Slow,
    /// Nothing arrived within the read timeout.
    HeartbeatTimeout,
    /// The hub is shutting down.
    Shutdown,
    /// The client sent a message over `max_message_bytes`.
    TooLarge,
}

impl CloseReason {
    /// WebSocket close code and reason text.
    pub fn code(self) -> (u16, &'static str) {
        match self {
            CloseReason::PeerGone => (1000, "closed"),
            CloseReason::Replaced => (
                4000,
                "replaced by a newer connection with the same client id",
            ),
            CloseReason::Slow => (4001, "evicted: client reads too slowly"),
            CloseReason::HeartbeatTimeout => (4002, "read timeout: no frame or pong received"),
            CloseReason::Shutdown => (1001, "server shutting down"),
            CloseReason::TooLarge => (1009, "message too big"),
        }
    }
}

/// A registered client as the hub sees it.
pub(crate) struct ClientEntry {
    pub(crate) id: Arc<str>,
    /// Distinguishes this connection from a later one with the same id.
    pub(crate) conn_id: u64,
    /// When it registered (ms since the epoch): the newer of two registrations wins.
    pub(crate) since_ms: i64,
    tx: mpsc::Sender<Frame>,
    /// ms since `epoch` at which the queue was first found full (0: not full).
    full_since: AtomicU64,
    epoch: Instant,
    pub(crate) stop: CancellationToken,
    reason: OnceLock<CloseReason>,
}

/// What happened to one frame offered to a local client.
pub(crate) enum Offer {
    Queued,
    Full { evict: bool },
    Gone,
}

impl ClientEntry {
    /// Queues `frame` without waiting. A queue that stays full past `grace` asks for eviction.
    pub(crate) fn offer(&self, frame: Frame, grace: std::time::Duration) -> Offer {
        match self.tx.try_send(frame) {
            Ok(()) => {
                if self.full_since.load(Ordering::Relaxed) != 0 {
                    self.full_since.store(0, Ordering::Relaxed);
                }
                Offer::Queued
            }
            Err(mpsc::error::TrySendError::Full(mut frame)) => {
                frame.acknowledge(Err(HubError::SendBufferFull(self.id.to_string())));
                let now = self.epoch.elapsed().as_millis() as u64 + 1;
                let first = match self.full_since.compare_exchange(
                    0,
                    now,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => now,
                    Err(earlier) => earlier,
                };
                Offer::Full {
                    evict: now.saturating_sub(first) >= grace.as_millis() as u64,
                }
            }
            Err(mpsc::error::TrySendError::Closed(mut frame)) => {
                frame.acknowledge(Err(HubError::ClientNotFound(self.id.to_string())));
                Offer::Gone
            }
        }
    }

    /// Ends the connection for `reason` (the first reason given wins).
    pub(crate) fn disconnect(&self, reason: CloseReason) {
        let _ = self.reason.set(reason);
        self.stop.cancel();
    }

    fn reason(&self) -> CloseReason {
        self.reason.get().copied().unwrap_or(CloseReason::PeerGone)
    }
}

/// Creates the entry and starts the connection's two tasks on the hub's tracker.
pub(crate) fn start(
    hub: &Arc<HubInner>,
    id: Arc<str>,
    conn_id: u64,
    sender: Box<dyn FrameSender>,
    receiver: Box<dyn FrameReceiver>,
    first: Option<Frame>,
) -> Arc<ClientEntry> {
    let (tx, rx) = mpsc::channel(hub.config.message_buffer_cap.max(1));
    if let Some(first) = first {
        // The channel is new and has room: the greeting is the first frame the client sees.
        let _ = tx.try_send(first);
    }
    let entry = Arc::new(ClientEntry {
        id,
        conn_id,
        since_ms: crate::message::now_ms(),
        tx,
        full_since: AtomicU64::new(0),
        epoch: Instant::now(),
        stop: hub.stop.child_token(),
        reason: OnceLock::new(),
    });
    let writer_hub = hub.clone();
    let writer_entry = entry.clone();
    hub.tasks.spawn(async move {
        write_loop(&writer_hub, &writer_entry, sender, rx).await;
        writer_entry.stop.cancel();
    });
    let reader_hub = hub.clone();
    let reader_entry = entry.clone();
    hub.tasks.spawn(async move {
        read_loop(&reader_hub, &reader_entry, receiver).await;
        reader_entry.stop.cancel();
        // The reader outlives nothing else: remove the client once both loops are ending.
        reader_hub.unregister(&reader_entry);
    });
    entry
}

async fn write_loop(
    hub: &HubInner,
    entry: &ClientEntry,
    mut sender: Box<dyn FrameSender>,
    mut rx: mpsc::Receiver<Frame>,
) {
    let config = &hub.config;
    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + config.ping_interval,
        config.ping_interval,
    );
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let wire = tokio::select! {
            biased;
            () = entry.stop.cancelled() => break,
            frame = rx.recv() => match frame {
                Some(mut frame) => {
                    let result = write(&mut *sender, frame.to_wire(), config.write_timeout).await;
                    match result {
                        Ok(()) => {
                            Metrics::inc(&hub.metrics.frames_out);
                            frame.acknowledge(Ok(()));
                            continue;
                        }
                        Err(timed_out) => {
                            frame.acknowledge(Err(HubError::NotDelivered(entry.id.to_string())));
                            if timed_out {
                                tracing::warn!(client = %entry.id, timeout = ?config.write_timeout, "write timed out: evicting slow client");
                                Metrics::inc(&hub.metrics.evictions);
                                entry.disconnect(CloseReason::Slow);
                            }
                            break;
                        }
                    }
                }
                None => break,
            },
            _ = ping.tick() => transport::Frame::Ping(bytes::Bytes::new()),
        };
        if let Err(timed_out) = write(&mut *sender, wire, config.write_timeout).await {
            if timed_out {
                Metrics::inc(&hub.metrics.evictions);
                entry.disconnect(CloseReason::Slow);
            }
            break;
        }
    }
    // Frames still queued will not be written: fail their acks.
    rx.close();
    while let Ok(mut frame) = rx.try_recv() {
        frame.acknowledge(Err(HubError::NotDelivered(entry.id.to_string())));
    }
    let (code, text) = entry.reason().code();
    let _ = tokio::time::timeout(
        config.write_timeout.min(std::time::Duration::from_secs(2)),
        sender.close(code, text),
    )
    .await;
}

/// Writes one frame within `timeout`; `Err(true)` on timeout, `Err(false)` on a broken socket.
async fn write(
    sender: &mut dyn FrameSender,
    frame: transport::Frame,
    timeout: std::time::Duration,
) -> Result<(), bool> {
    match tokio::time::timeout(timeout, sender.send(frame)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(false),
        Err(_) => Err(true),
    }
}

async fn read_loop(hub: &HubInner, entry: &ClientEntry, mut receiver: Box<dyn FrameReceiver>) {
    let ctx = RequestContext {
        client_id: entry.id.clone(),
        node_id: hub.node_id.clone(),
    };
    loop {
        let next = tokio::select! {
            biased;
            () = entry.stop.cancelled() => return,
            next = tokio::time::timeout(hub.config.read_timeout, receiver.recv()) => next,
        };
        let frame = match next {
            Err(_) => {
                tracing::info!(client = %entry.id, timeout = ?hub.config.read_timeout, "no frame within the read timeout: removing client");
                Metrics::inc(&hub.metrics.heartbeat_timeouts);
                entry.disconnect(CloseReason::HeartbeatTimeout);
                return;
            }
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => return,
            Ok(Err(transport::TransportError::TooLarge { size, .. })) => {
                return close_too_large(hub, entry, size);
            }
            Ok(Err(e)) => {
                tracing::debug!(client = %entry.id, error = %e, "connection broken");
                return;
            }
        };
        Metrics::inc(&hub.metrics.frames_in);
        let bytes: &[u8] = match &frame {
            transport::Frame::Text(text) => text.as_bytes(),
            transport::Frame::Binary(bytes) => bytes,
            // Any frame refreshes the deadline; pings are answered by the WebSocket layer.
            transport::Frame::Ping(_) | transport::Frame::Pong(_) => continue,
        };
        if bytes.len() > hub.config.max_message_bytes {
            return close_too_large(hub, entry, bytes.len());
        }
        if let Some(reply) = hub.dispatcher.dispatch(&ctx, bytes).await
            && let Offer::Full { .. } =
                entry.offer(Frame::text(reply.to_json()), hub.config.slow_client_grace)
        {
            Metrics::inc(&hub.metrics.drops);
        }
    }
}

/// Ends a connection whose client sent a message over the limit: close 1009 (Message Too Big)
/// and a warning with the sizes (never the content, which may be anything).
fn close_too_large(hub: &HubInner, entry: &ClientEntry, size: usize) {
    tracing::warn!(
        client = %entry.id,
        size,
        limit = hub.config.max_message_bytes,
        "message over max_message_bytes: closing the connection with 1009"
    );
    entry.disconnect(CloseReason::TooLarge);
}
