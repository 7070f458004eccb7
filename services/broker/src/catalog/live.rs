//! Live fan-out of a non-reliable topic: nothing stored; each message is handed, in the
//! producer's call, straight to the topic's subscriptions, whose bounded consumer queues drop
//! (and count) what does not fit.
//!
//! Handing over in the producer's call, rather than through a channel and a task per
//! subscription, saves a task wake-up and a copy of the message per delivery: the send costs
//! the broker one hand-off (to the consumer's stream) instead of two.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use courier_impls::grpc::proto::danube::StreamMessage;

/// Where a live topic's messages go: one subscription.
pub trait LiveSink: Send + Sync + std::fmt::Debug {
    /// Takes `message` (queues it for a consumer, or drops and counts it). Returns false once
    /// the sink has stopped: the fan-out then forgets it. Called under the fan-out's lock, so
    /// it must not block nor publish to a fan-out itself.
    fn offer(&self, message: Arc<StreamMessage>) -> bool;
}

/// The fan-out of one non-reliable topic.
#[derive(Debug, Default)]
pub struct LiveFanout {
    /// Guards the offset counter together with the hand-over, so offsets reach sinks in order.
    inner: Mutex<Inner>,
    unheard: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    next_offset: u64,
    sinks: Vec<Weak<dyn LiveSink>>,
}

impl LiveFanout {
    /// A fan-out without sinks.
    pub fn new() -> LiveFanout {
        LiveFanout::default()
    }

    /// Gives `message` the next dense offset (its `msg_id.topic_offset`, which must be set)
    /// and hands it to every sink; returns the offset. With no sink the message is dropped and
    /// counted in [`unheard`](Self::unheard).
    pub fn publish(&self, mut message: StreamMessage) -> u64 {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let offset = inner.next_offset;
        inner.next_offset += 1;
        if let Some(id) = message.msg_id.as_mut() {
            id.topic_offset = offset;
        }
        let message = Arc::new(message);
        let mut heard = false;
        inner.sinks.retain(|sink| match sink.upgrade() {
            Some(sink) if sink.offer(message.clone()) => {
                heard = true;
                true
            }
            _ => false,
        });
        if !heard {
            self.unheard.fetch_add(1, Ordering::Relaxed);
        }
        offset
    }

    /// Hands the messages published from now on to `sink`, until it stops (its
    /// [`offer`](LiveSink::offer) answers false) or is dropped.
    pub fn attach(&self, sink: Weak<dyn LiveSink>) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.sinks.retain(|sink| sink.strong_count() > 0);
        inner.sinks.push(sink);
    }

    /// Messages published while no sink existed (dropped: nothing is stored).
    pub fn unheard(&self) -> u64 {
        self.unheard.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_impls::grpc::proto::danube::MsgId;

    fn message(payload: &'static [u8]) -> StreamMessage {
        StreamMessage {
            msg_id: Some(MsgId::default()),
            payload: bytes::Bytes::from_static(payload),
            ..StreamMessage::default()
        }
    }

    /// Keeps what it is offered, until told to stop.
    #[derive(Debug, Default)]
    struct Kept {
        messages: Mutex<Vec<Arc<StreamMessage>>>,
        stopped: std::sync::atomic::AtomicBool,
    }

    impl LiveSink for Kept {
        fn offer(&self, message: Arc<StreamMessage>) -> bool {
            if self.stopped.load(Ordering::SeqCst) {
                return false;
            }
            self.messages
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(message);
            true
        }
    }

    impl Kept {
        fn offsets(&self) -> Vec<u64> {
            self.messages
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .filter_map(|m| m.msg_id.as_ref().map(|id| id.topic_offset))
                .collect()
        }
    }

    #[test]
    fn sinks_get_dense_offsets_from_when_they_attach_until_they_stop_or_go() {
        let live = LiveFanout::new();
        assert_eq!(live.publish(message(b"before")), 0);
        assert_eq!(live.unheard(), 1, "no sink: dropped and counted");
        let first = Arc::new(Kept::default());
        let second = Arc::new(Kept::default());
        live.attach(Arc::downgrade(&first) as Weak<dyn LiveSink>);
        live.publish(message(b"a"));
        live.attach(Arc::downgrade(&second) as Weak<dyn LiveSink>);
        live.publish(message(b"b"));
        assert_eq!(first.offsets(), [1, 2]);
        assert_eq!(second.offsets(), [2]);
        first.stopped.store(true, Ordering::SeqCst);
        drop(second);
        live.publish(message(b"c"));
        assert_eq!(first.offsets(), [1, 2], "a stopped sink gets nothing more");
        assert_eq!(live.unheard(), 2, "c reached nobody");
        assert!(
            live.inner
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .sinks
                .is_empty(),
            "stopped and dropped sinks are forgotten"
        );
    }
}
