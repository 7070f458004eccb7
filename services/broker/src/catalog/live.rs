//! Live fan-out of a non-reliable topic: nothing stored, slow receivers lag and are told how
//! many messages they lost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use courier_impls::grpc::proto::danube::StreamMessage;
use tokio::sync::broadcast;

/// How many messages each receiver may fall behind before it loses the oldest (spec §2:
/// per-consumer queue of 1 000; tokio's broadcast rounds it up to a power of two, 1 024).
pub const LIVE_QUEUE: usize = 1_000;

/// The fan-out of one non-reliable topic.
#[derive(Debug)]
pub struct LiveFanout {
    /// Guards the offset counter together with the send, so offsets reach receivers in order.
    next_offset: Mutex<u64>,
    sender: broadcast::Sender<Arc<StreamMessage>>,
    unheard: AtomicU64,
}

impl LiveFanout {
    /// A fan-out whose receivers each hold up to `capacity` messages (at least 1).
    pub fn new(capacity: usize) -> LiveFanout {
        let (sender, _) = broadcast::channel(capacity.max(1));
        LiveFanout {
            next_offset: Mutex::new(0),
            sender,
            unheard: AtomicU64::new(0),
        }
    }

    /// Gives `message` the next dense offset (its `msg_id.topic_offset`, which must be set)
    /// and hands it to every current receiver; returns the offset. With no receiver the
    /// message is dropped and counted in [`unheard`](Self::unheard).
    pub fn publish(&self, mut message: StreamMessage) -> u64 {
        let mut next = self
            .next_offset
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let offset = *next;
        *next += 1;
        if let Some(id) = message.msg_id.as_mut() {
            id.topic_offset = offset;
        }
        if self.sender.send(Arc::new(message)).is_err() {
            self.unheard.fetch_add(1, Ordering::Relaxed);
        }
        offset
    }

    /// A receiver of the messages published from now on. A receiver more than the capacity
    /// behind gets `RecvError::Lagged(n)`: `n` messages were dropped for it (count them).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StreamMessage>> {
        self.sender.subscribe()
    }

    /// Messages published while no receiver existed (dropped: nothing is stored).
    pub fn unheard(&self) -> u64 {
        self.unheard.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_impls::grpc::proto::danube::MsgId;
    use tokio::sync::broadcast::error::TryRecvError;

    fn message(payload: &'static [u8]) -> StreamMessage {
        StreamMessage {
            msg_id: Some(MsgId::default()),
            payload: bytes::Bytes::from_static(payload),
            ..StreamMessage::default()
        }
    }

    #[test]
    fn receivers_get_dense_offsets_lag_when_slow_and_nothing_is_kept() {
        let live = LiveFanout::new(2);
        assert_eq!(live.publish(message(b"before")), 0);
        assert_eq!(live.unheard(), 1, "no receiver: dropped and counted");
        let mut receiver = live.subscribe();
        for payload in [&b"a"[..], b"b", b"c"] {
            live.publish(message(payload));
        }
        assert_eq!(receiver.try_recv().err(), Some(TryRecvError::Lagged(1)));
        let next = receiver.try_recv().expect("b");
        assert_eq!(next.payload.as_ref(), b"b");
        assert_eq!(next.msg_id.as_ref().map(|id| id.topic_offset), Some(2));
        assert_eq!(
            receiver
                .try_recv()
                .expect("c")
                .msg_id
                .as_ref()
                .map(|id| id.topic_offset),
            Some(3)
        );
        assert_eq!(receiver.try_recv().err(), Some(TryRecvError::Empty));
        assert_eq!(live.unheard(), 1);
    }
}
