//! [`MemoryBus`]: an in-process [`MessageBus`] over tokio broadcast channels.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use courier_traits::bus::{
    BusCapabilities, BusError, Message, MessageBus, MessageId, Published, SubscribeFrom,
    Subscription, Topic,
};
use tokio::sync::broadcast;

use crate::payload_limit;

/// Settings of a [`MemoryBus`]: start from `default()` and change what you need with the
/// `with_*` methods.
///
/// ```
/// use courier_impls::memory::{MemoryBus, MemoryBusConfig};
/// let bus = MemoryBus::with_config(MemoryBusConfig::default().with_subscriber_buffer(64));
/// ```
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct MemoryBusConfig {
    /// Messages buffered per subscriber before it starts losing the oldest (and is told so).
    pub subscriber_buffer: usize,
    /// Largest payload accepted.
    pub max_payload_bytes: usize,
}

impl Default for MemoryBusConfig {
    fn default() -> Self {
        MemoryBusConfig {
            subscriber_buffer: 1024,
            max_payload_bytes: 16 << 20,
        }
    }
}

impl MemoryBusConfig {
    /// Sets [`subscriber_buffer`](Self::subscriber_buffer) (default 1024; at least 1).
    pub fn with_subscriber_buffer(mut self, messages: usize) -> MemoryBusConfig {
        self.subscriber_buffer = messages;
        self
    }

    /// Sets [`max_payload_bytes`](Self::max_payload_bytes) (default 16 MiB).
    pub fn with_max_payload_bytes(mut self, bytes: usize) -> MemoryBusConfig {
        self.max_payload_bytes = bytes;
        self
    }
}

/// An in-process message bus: fan-out between tasks of one process, nothing persisted.
///
/// Each subscriber has a bounded buffer of [`MemoryBusConfig::subscriber_buffer`] messages; a
/// subscriber that falls further behind receives [`BusError::Lagged`] with the number it lost
/// and continues with the oldest message still buffered. Publishers never wait for
/// subscribers. Clones share the same bus.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), courier_traits::BusError> {
/// use courier_impls::memory::MemoryBus;
/// use courier_traits::bus::{MessageBus, SubscribeFrom, Topic};
/// use futures::StreamExt;
///
/// let bus = MemoryBus::new();
/// let topic = Topic::new("news")?;
/// let mut sub = bus.subscribe(&topic, SubscribeFrom::Live).await?;
/// bus.publish(&topic, "extra!".into()).await?;
/// assert_eq!(&sub.next().await.unwrap()?.payload[..], b"extra!");
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    config: MemoryBusConfig,
    topics: Mutex<HashMap<Topic, broadcast::Sender<Message>>>,
    closed: AtomicBool,
}

impl Inner {
    // A poisoned lock only means another thread panicked while holding it; the map itself is
    // still consistent (every mutation is a single insert or remove), so keep going.
    fn topics(&self) -> MutexGuard<'_, HashMap<Topic, broadcast::Sender<Message>>> {
        self.topics.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl MemoryBus {
    /// A bus with default settings.
    pub fn new() -> MemoryBus {
        MemoryBus::default()
    }

    /// A bus with these settings.
    pub fn with_config(config: MemoryBusConfig) -> MemoryBus {
        let subscriber_buffer = config.subscriber_buffer.max(1);
        MemoryBus {
            inner: Arc::new(Inner {
                config: MemoryBusConfig {
                    subscriber_buffer,
                    ..config
                },
                ..Inner::default()
            }),
        }
    }

    /// How many topics currently have subscribers.
    pub fn topic_count(&self) -> usize {
        self.inner.topics().len()
    }

    fn ensure_open(&self) -> Result<(), BusError> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(BusError::Closed)
        } else {
            Ok(())
        }
    }
}

/// Removes a topic's channel once its last subscriber is gone, so short-lived topics
/// (one per client, say) do not accumulate.
struct TopicGuard {
    inner: Arc<Inner>,
    topic: Topic,
}

impl Drop for TopicGuard {
    fn drop(&mut self) {
        let mut topics = self.inner.topics();
        if topics
            .get(&self.topic)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            topics.remove(&self.topic);
        }
    }
}

struct SubscriptionState {
    // Field order matters: the receiver must be dropped before the guard counts receivers.
    rx: broadcast::Receiver<Message>,
    _guard: TopicGuard,
}

#[async_trait]
impl MessageBus for MemoryBus {
    async fn publish_with_id(
        &self,
        topic: &Topic,
        id: MessageId,
        payload: Bytes,
    ) -> Result<Published, BusError> {
        self.ensure_open()?;
        payload_limit::check(&payload, self.inner.config.max_payload_bytes)?;
        let sender = self.inner.topics().get(topic).cloned();
        if let Some(sender) = sender {
            let message = Message {
                id: id.clone(),
                topic: topic.clone(),
                payload,
                position: None,
            };
            // An error only means every subscriber left meanwhile: nobody to deliver to.
            let _ = sender.send(message);
        }
        Ok(Published { id, position: None })
    }

    async fn subscribe(
        &self,
        topic: &Topic,
        from: SubscribeFrom,
    ) -> Result<Subscription, BusError> {
        self.ensure_open()?;
        if let SubscribeFrom::After(_) = from {
            return Err(BusError::Unsupported(
                "resume from a position (the memory bus keeps no history)",
            ));
        }
        let rx = {
            let mut topics = self.inner.topics();
            // Re-check under the lock so a concurrent close cannot leave this receiver behind.
            self.ensure_open()?;
            let buffer = self.inner.config.subscriber_buffer;
            topics
                .entry(topic.clone())
                .or_insert_with(|| broadcast::channel(buffer).0)
                .subscribe()
        };
        let state = SubscriptionState {
            rx,
            _guard: TopicGuard {
                inner: self.inner.clone(),
                topic: topic.clone(),
            },
        };
        let stream = futures::stream::unfold(state, |mut state| async move {
            match state.rx.recv().await {
                Ok(message) => Some((Ok(message), state)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    Some((Err(BusError::Lagged { missed }), state))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        Ok(Box::pin(stream))
    }

    fn capabilities(&self) -> BusCapabilities {
        BusCapabilities {
            ordered: true,
            exactly_once: true,
            lag_reporting: true,
            ..BusCapabilities::NONE
        }
    }

    async fn close(&self) -> Result<(), BusError> {
        self.inner.closed.store(true, Ordering::Release);
        // Dropping every sender ends every subscription once it has drained its buffer.
        self.inner.topics().clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn dropped_subscriptions_release_their_topic() {
        let bus = MemoryBus::new();
        let topic = Topic::new("t").expect("valid");
        let a = bus
            .subscribe(&topic, SubscribeFrom::Live)
            .await
            .expect("open");
        let b = bus
            .subscribe(&topic, SubscribeFrom::Live)
            .await
            .expect("open");
        assert_eq!(bus.topic_count(), 1);
        drop(a);
        assert_eq!(bus.topic_count(), 1);
        drop(b);
        assert_eq!(bus.topic_count(), 0);
    }

    #[tokio::test]
    async fn oversized_payload_is_refused() {
        let bus = MemoryBus::with_config(
            MemoryBusConfig::default()
                .with_subscriber_buffer(4)
                .with_max_payload_bytes(3),
        );
        let topic = Topic::new("t").expect("valid");
        let err = bus
            .publish(&topic, Bytes::from_static(b"four"))
            .await
            .expect_err("too big");
        assert!(matches!(
            err,
            BusError::PayloadTooLarge { size: 4, limit: 3 }
        ));
    }

    #[tokio::test]
    async fn resume_is_refused_as_unsupported() {
        let bus = MemoryBus::new();
        let topic = Topic::new("t").expect("valid");
        let from = SubscribeFrom::After(courier_traits::bus::Position::new("1"));
        assert!(matches!(
            bus.subscribe(&topic, from).await,
            Err(BusError::Unsupported(_))
        ));
        let mut sub = bus
            .subscribe(&topic, SubscribeFrom::Live)
            .await
            .expect("open");
        bus.close().await.expect("close");
        assert!(sub.next().await.is_none());
    }
}
