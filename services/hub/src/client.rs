//! A registered client as the hub sees it: the sending end of its bounded queue, how a frame
//! is offered to it, and how it is told to go ([`CloseReason`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;
// The runtime's clock (not std's): the eviction grace follows tokio's time, so tests can
// pause and advance it.
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::channels::ClientGrants;
use crate::channels::recovery::RecoveryBuffers;
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

/// A registered client.
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
    /// What its token allows on channels.
    pub(crate) grants: ClientGrants,
    /// Live publications held while history subscriptions are set up.
    pub(crate) recovery: RecoveryBuffers,
}

/// What happened to one frame offered to a local client.
pub(crate) enum Offer {
    Queued,
    Full { evict: bool },
    Gone,
}

impl ClientEntry {
    /// An entry whose frames go to `tx`; `stop` ends the connection's tasks.
    pub(crate) fn new(
        id: Arc<str>,
        conn_id: u64,
        tx: mpsc::Sender<Frame>,
        stop: CancellationToken,
        grants: ClientGrants,
    ) -> ClientEntry {
        ClientEntry {
            id,
            conn_id,
            since_ms: crate::message::now_ms(),
            tx,
            full_since: AtomicU64::new(0),
            epoch: Instant::now(),
            stop,
            reason: OnceLock::new(),
            grants,
            recovery: RecoveryBuffers::default(),
        }
    }

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

    /// Why the connection ended (`PeerGone` unless someone said otherwise).
    pub(crate) fn reason(&self) -> CloseReason {
        self.reason.get().copied().unwrap_or(CloseReason::PeerGone)
    }
}
