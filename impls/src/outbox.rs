//! The delivery end of a subscription fed by a background task: a bounded buffer that never
//! blocks the task, and honest loss accounting.
//!
//! When the subscriber's buffer is full a message is dropped and counted; the count is
//! reported as [`BusError::Lagged`] as soon as there is room again, before any later message.

use courier_traits::bus::{BusError, Message, Subscription};
use tokio::sync::mpsc;

type Item = Result<Message, BusError>;

/// The sending side, owned by the task that feeds one subscription.
pub(crate) struct Outbox {
    tx: mpsc::Sender<Item>,
    missed: u64,
}

impl Outbox {
    /// An outbox buffering `buffer` items, and the subscription that drains it.
    pub(crate) fn new(buffer: usize) -> (Outbox, Subscription) {
        let (tx, rx) = mpsc::channel(buffer.max(1));
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        (Outbox { tx, missed: 0 }, Box::pin(stream))
    }

    /// A handle to wait on (`closed()`, `reserve()`) without borrowing the outbox.
    pub(crate) fn sender(&self) -> mpsc::Sender<Item> {
        self.tx.clone()
    }

    /// Messages lost and not yet reported.
    pub(crate) fn pending_loss(&self) -> u64 {
        self.missed
    }

    /// Reports the pending loss through a reserved slot (see [`Outbox::sender`]).
    pub(crate) fn report_loss(&mut self, permit: mpsc::Permit<'_, Item>) {
        permit.send(Err(BusError::Lagged {
            missed: self.missed,
        }));
        self.missed = 0;
    }

    /// Queues `message`, or drops and counts it if the buffer is full.
    pub(crate) fn deliver(&mut self, message: Message) {
        if self.missed > 0 {
            match self.tx.try_send(Err(BusError::Lagged {
                missed: self.missed,
            })) {
                Ok(()) => self.missed = 0,
                Err(_) => {
                    self.missed += 1;
                    return;
                }
            }
        }
        if self.tx.try_send(Ok(message)).is_err() {
            self.missed += 1;
        }
    }

    /// Ends the subscription with `error` as its last item (waits for room).
    #[cfg_attr(not(any(feature = "etcd", feature = "redis")), allow(dead_code))]
    pub(crate) async fn fail(self, error: BusError) {
        let _ = self.tx.send(Err(error)).await;
    }
}
