//! Non-reliable dispatch for one subscription: live messages into bounded per-consumer
//! queues; nothing is tracked after a message is queued, and what does not fit is dropped and
//! counted.

use std::collections::{HashMap, VecDeque};

use super::config::SubscriptionConfig;
use super::error::SubscribeError;
use super::members::Attached;
use super::members::{Members, Presence};
use courier_impls::grpc::proto::danube::consumer_request::SubscriptionType;

/// What happened to an offered live message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offered {
    /// Queued for this consumer.
    Queued(u64),
    /// This consumer's queue was full: dropped and counted.
    Dropped(u64),
    /// No consumer could take it (none present, or under KeyShared none whose filters accept
    /// its key): dropped and counted.
    Unrouted,
}

/// One non-reliable subscription.
#[derive(Debug)]
pub struct LiveSubscription<M> {
    members: Members,
    queue_limit: usize,
    queues: HashMap<u64, VecDeque<M>>,
    dropped: u64,
}

impl<M> LiveSubscription<M> {
    /// A subscription of type `kind`; only [`SubscriptionConfig::consumer_queue`] applies.
    pub fn new(kind: SubscriptionType, config: &SubscriptionConfig) -> LiveSubscription<M> {
        LiveSubscription {
            members: Members::new(kind),
            queue_limit: config.consumer_queue,
            queues: HashMap::new(),
            dropped: 0,
        }
    }

    /// The subscription's type.
    pub fn kind(&self) -> SubscriptionType {
        self.members.kind()
    }

    /// Attaches consumer `id` named `name`; a replaced Exclusive consumer's queue is dropped
    /// (live messages are not redelivered).
    ///
    /// Errors: [`SubscribeError::TypeMismatch`], [`SubscribeError::ExclusiveHeld`],
    /// [`SubscribeError::DuplicateId`].
    pub fn subscribe(
        &mut self,
        kind: SubscriptionType,
        id: u64,
        name: &str,
        key_filters: Vec<String>,
    ) -> Result<Attached, SubscribeError> {
        let attached = self.members.attach(kind, id, name, key_filters)?;
        if let Some(old) = attached.replaced {
            self.queues.remove(&old);
        }
        Ok(attached)
    }

    /// Whether consumer `id` is attached.
    pub fn holds(&self, id: u64) -> bool {
        self.members.get(id).is_some()
    }

    /// The attached consumers' ids, in the order they attached.
    pub fn consumers(&self) -> Vec<u64> {
        self.members.ids().collect()
    }

    /// How many attached consumers are not detached: those whose stream is open or not opened
    /// yet (a consumer whose stream ended may never come back, so caps do not count it).
    pub fn present_consumers(&self) -> usize {
        self.members.present()
    }

    /// Consumer `id` opened its stream.
    ///
    /// Errors: [`SubscribeError::UnknownConsumer`].
    pub fn open_stream(&mut self, id: u64) -> Result<(), SubscribeError> {
        if self.members.set_presence(id, Presence::Streaming) {
            Ok(())
        } else {
            Err(SubscribeError::UnknownConsumer { consumer_id: id })
        }
    }

    /// Consumer `id`'s stream ended: it gets no new messages until it opens one again (what is
    /// already queued for it stays).
    pub fn close_stream(&mut self, id: u64) {
        self.members.set_presence(id, Presence::Detached);
    }

    /// Detaches consumer `id` and drops its queue. Returns whether it was attached.
    pub fn remove(&mut self, id: u64) -> bool {
        self.queues.remove(&id);
        self.members.remove(id)
    }

    /// Whether no consumer is attached.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Queues `message` (routing key `key`) for the consumer the subscription's type picks.
    pub fn offer(&mut self, key: &str, message: M) -> Offered {
        let Some(consumer) = self.members.pick(key) else {
            self.dropped = self.dropped.saturating_add(1);
            return Offered::Unrouted;
        };
        let queue = self.queues.entry(consumer).or_default();
        if queue.len() >= self.queue_limit {
            self.dropped = self.dropped.saturating_add(1);
            return Offered::Dropped(consumer);
        }
        queue.push_back(message);
        Offered::Queued(consumer)
    }

    /// Whether consumer `id` has a message waiting.
    pub fn has_pending(&self, id: u64) -> bool {
        self.queues.get(&id).is_some_and(|queue| !queue.is_empty())
    }

    /// The oldest message queued for consumer `id`.
    pub fn poll(&mut self, id: u64) -> Option<M> {
        self.queues.get_mut(&id)?.pop_front()
    }

    /// Counts `count` messages dropped before they reached this subscription (a lagging
    /// fan-out receiver).
    pub fn record_dropped(&mut self, count: u64) {
        self.dropped = self.dropped.saturating_add(count);
    }

    /// Messages dropped so far (full queues, nobody to take them, lost upstream).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}
