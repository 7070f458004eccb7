//! [`AckQueue`]: the acks of one partition waiting for its ack task ([`super::acks`]), and
//! whether that task is running.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use courier_impls::grpc::proto::danube::MsgId;
use tokio::sync::oneshot;

use super::error::BrokerError;

/// At most this many acks go in one call.
const MAX_BATCH: usize = 1_024;

/// One ack waiting to be sent, and where its answer goes.
#[derive(Debug)]
pub(crate) struct PendingAck {
    pub(crate) msg_id: MsgId,
    pub(crate) done: oneshot::Sender<Result<(), BrokerError>>,
}

/// The acks of one partition waiting for its ack task.
#[derive(Debug)]
pub(crate) struct AckQueue {
    state: Mutex<QueueState>,
    /// Whether the broker serves `AckMany` (until it answers `Unimplemented`).
    batched: AtomicBool,
}

#[derive(Debug, Default)]
struct QueueState {
    pending: Vec<PendingAck>,
    /// An ack task is running (or about to): acks queued now are its to send.
    flushing: bool,
}

impl Default for AckQueue {
    fn default() -> AckQueue {
        AckQueue {
            state: Mutex::new(QueueState::default()),
            batched: AtomicBool::new(true),
        }
    }
}

impl AckQueue {
    fn state(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `ack`; true when no task is running to send it (the caller starts one).
    pub(crate) fn push(&self, ack: PendingAck) -> bool {
        let mut state = self.state();
        state.pending.push(ack);
        !std::mem::replace(&mut state.flushing, true)
    }

    /// The next acks to send, or none (and the task is no longer running).
    pub(crate) fn next_batch(&self) -> Vec<PendingAck> {
        let mut state = self.state();
        let take = state.pending.len().min(MAX_BATCH);
        if take == 0 {
            state.flushing = false;
        }
        state.pending.drain(..take).collect()
    }

    /// Whether the broker is still believed to serve `AckMany`.
    pub(crate) fn batched(&self) -> bool {
        self.batched.load(Ordering::Relaxed)
    }

    /// The broker answered `Unimplemented` for `AckMany`: `Ack` per message from now on.
    pub(crate) fn unbatch(&self) {
        self.batched.store(false, Ordering::Relaxed);
    }

    /// The partition subscribed again (perhaps on another node): try `AckMany` again.
    pub(crate) fn rebatch(&self) {
        self.batched.store(true, Ordering::Relaxed);
    }

    /// The task stopped before the queue was empty (closed, aborted, never started): what is
    /// left fails with [`BrokerError::Closed`].
    pub(crate) fn abandon(&self) {
        let left = {
            let mut state = self.state();
            state.flushing = false;
            std::mem::take(&mut state.pending)
        };
        for ack in left {
            let _ = ack.done.send(Err(BrokerError::Closed));
        }
    }
}
