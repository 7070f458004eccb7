//! Wake-ups by key (a stream name, a topic) for waiters whose data lives outside the process:
//! after a commit the writer (or a notification listener) wakes the key's waiters, who then
//! re-read the stored state.
//!
//! A waiter subscribes *before* it reads the state, so an append that commits between the
//! read and the wait still wakes it (no lost wake-up).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use tokio::sync::{Notify, watch};

/// Waiters by stream; entries go away when their last waiter does.
#[derive(Default)]
pub(crate) struct Wakers {
    streams: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// Signalled on every subscription, so a poller can sleep while nobody waits.
    subscribed: Notify,
}

impl Wakers {
    /// A receiver that changes on every later [`Wakers::wake`] of `name`.
    pub(crate) fn subscribe(&self, name: &str) -> watch::Receiver<u64> {
        let receiver = {
            let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
            streams
                .entry(name.to_owned())
                .or_insert_with(|| watch::channel(0).0)
                .subscribe()
        };
        self.subscribed.notify_one();
        receiver
    }

    /// Wakes every waiter of `name` (and forgets streams nobody waits on any more).
    pub(crate) fn wake(&self, name: &str) {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = streams.get(name) {
            if sender.receiver_count() == 0 {
                streams.remove(name);
            } else {
                sender.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }
}

impl Wakers {
    /// Wakes every waiter of every stream (after missed notifications, e.g. a reconnect).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn wake_all(&self) {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        streams.retain(|_, sender| sender.receiver_count() > 0);
        for sender in streams.values() {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

impl Wakers {
    /// The streams somebody waits on now (and forgets the others).
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn waited(&self) -> Vec<String> {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        streams.retain(|_, sender| sender.receiver_count() > 0);
        streams.keys().cloned().collect()
    }

    /// Returns after the next [`Wakers::subscribe`] (at once if one happened since the last
    /// call), so a poller seeing no waiters can sleep until one comes.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) async fn next_subscription(&self) {
        self.subscribed.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wake_reaches_subscribers_and_forgets_idle_streams() {
        let wakers = Wakers::default();
        let mut rx = wakers.subscribe("s");
        wakers.wake("s");
        rx.changed().await.expect("woken");
        drop(rx);
        wakers.wake("s");
        assert!(wakers.streams.lock().expect("lock").is_empty());
    }
}
