//! Reliable (at-least-once) dispatch for one subscription: the in-flight window over the topic
//! log, acks and the cursor, Nack delays, ack timeouts, redelivery and dead letters.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use courier_traits::clock::Clock;

use super::config::SubscriptionConfig;
use super::error::SubscribeError;
use super::members::Attached;
use super::members::{Members, Presence};
use courier_impls::grpc::proto::danube::consumer_request::SubscriptionType;

/// A message handed to a consumer's stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery<M> {
    /// Its offset in the topic log.
    pub offset: u64,
    /// The message.
    pub message: M,
    /// How many times it was delivered before and not acked (0 on the first delivery).
    pub redeliveries: u32,
}

/// A message given up on after [`SubscriptionConfig::max_redeliveries`]: the caller stores it
/// in the subscription's dead-letter stream. The cursor moves past it.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter<M> {
    /// Its offset in the topic log.
    pub offset: u64,
    /// The message.
    pub message: M,
    /// How many times it was delivered.
    pub deliveries: u32,
    /// Why the last delivery failed (a Nack's reason, the ack timeout, the stream's end).
    pub reason: String,
}

/// Where an in-flight message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// Waiting for a consumer that can take it.
    Unassigned,
    /// In this consumer's queue, not yet sent on its stream.
    Queued(u64),
    /// Sent to this consumer; redelivered if not acked by `deadline_ms`.
    Sent { consumer: u64, deadline_ms: u64 },
    /// Nacked; due again at this time.
    Delayed { due_ms: u64 },
}

#[derive(Debug)]
struct InFlight<M> {
    message: M,
    /// The routing key (KeyShared places by it).
    key: String,
    /// Failed deliveries so far.
    failures: u32,
    place: Place,
}

/// One reliable subscription: the messages read from the topic log and not yet settled
/// (acked or dead-lettered), at most [`SubscriptionConfig::max_unacked`], and the consumers
/// they go to. Messages are offered in log order; each consumer receives its messages in
/// that order, except redeliveries, which come before newer messages.
#[derive(Debug)]
pub struct ReliableSubscription<M> {
    members: Members,
    config: SubscriptionConfig,
    clock: Arc<dyn Clock>,
    /// The next log offset to offer.
    next_offset: u64,
    in_flight: BTreeMap<u64, InFlight<M>>,
    unassigned: BTreeSet<u64>,
    queues: HashMap<u64, BTreeSet<u64>>,
    /// (due time, offset) of every `Sent` deadline and `Delayed` due time.
    timers: BTreeSet<(u64, u64)>,
    dead_letters: Vec<DeadLetter<M>>,
}

impl<M: Clone> ReliableSubscription<M> {
    /// A subscription of type `kind` whose first message is at log offset `start` (the
    /// durable cursor of an existing subscription, the log's tail for a new one).
    pub fn new(
        kind: SubscriptionType,
        config: SubscriptionConfig,
        clock: Arc<dyn Clock>,
        start: u64,
    ) -> ReliableSubscription<M> {
        ReliableSubscription {
            members: Members::new(kind),
            config,
            clock,
            next_offset: start,
            in_flight: BTreeMap::new(),
            unassigned: BTreeSet::new(),
            queues: HashMap::new(),
            timers: BTreeSet::new(),
            dead_letters: Vec::new(),
        }
    }

    /// The subscription's type.
    pub fn kind(&self) -> SubscriptionType {
        self.members.kind()
    }

    /// Attaches consumer `id` named `name`. A replaced Exclusive consumer's sent messages are
    /// redelivered to the new one.
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
            self.release(old, "the consumer was replaced by a new exclusive consumer");
        }
        self.dispatch();
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

    /// Consumer `id` opened its stream: it gets messages (again).
    ///
    /// Errors: [`SubscribeError::UnknownConsumer`].
    pub fn open_stream(&mut self, id: u64) -> Result<(), SubscribeError> {
        if !self.members.set_presence(id, Presence::Streaming) {
            return Err(SubscribeError::UnknownConsumer { consumer_id: id });
        }
        self.dispatch();
        Ok(())
    }

    /// Consumer `id`'s stream ended: what it was sent and has not acked is redelivered at once
    /// (a failed delivery), what was queued for it goes to the others; it gets nothing until it
    /// opens a stream again. Unknown ids are ignored.
    pub fn close_stream(&mut self, id: u64) {
        if self.members.set_presence(id, Presence::Detached) {
            self.release(id, "the consumer's stream ended before the ack");
            self.dispatch();
        }
    }

    /// Detaches consumer `id` for good, as [`close_stream`](Self::close_stream) does with its
    /// messages. Returns whether it was attached.
    pub fn remove(&mut self, id: u64) -> bool {
        if !self.members.remove(id) {
            return false;
        }
        self.release(id, "the consumer left before the ack");
        self.dispatch();
        true
    }

    /// Whether no consumer is attached.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// How many more messages [`offer`](Self::offer) takes now: the free part of the window,
    /// or 0 while no consumer can receive (nothing is read ahead for nobody).
    pub fn capacity(&self) -> usize {
        if !self.members.any_eligible() {
            return 0;
        }
        self.config.max_unacked.saturating_sub(self.in_flight.len())
    }

    /// The log offset to read next.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// The durable cursor: every offset below it is settled (acked or dead-lettered), so a
    /// restart resumes here.
    pub fn cursor(&self) -> u64 {
        self.in_flight
            .keys()
            .next()
            .copied()
            .unwrap_or(self.next_offset)
    }

    /// Offers the message at log `offset` with routing key `key`. Offsets below
    /// [`next_offset`](Self::next_offset) were offered already and are ignored (false); a gap
    /// above it is skipped. Call only while [`capacity`](Self::capacity) is above 0 (the
    /// window is not enforced here, so a caller may force one in).
    pub fn offer(&mut self, offset: u64, key: &str, message: M) -> bool {
        if offset < self.next_offset {
            return false;
        }
        self.next_offset = offset.saturating_add(1);
        self.in_flight.insert(
            offset,
            InFlight {
                message,
                key: key.to_owned(),
                failures: 0,
                place: Place::Unassigned,
            },
        );
        self.unassigned.insert(offset);
        self.dispatch();
        true
    }

    /// Whether consumer `id` has a message waiting for [`poll`](Self::poll).
    pub fn has_pending(&self, id: u64) -> bool {
        self.queues.get(&id).is_some_and(|queue| !queue.is_empty())
    }

    /// The next message for consumer `id`'s stream (the lowest offset queued for it), now
    /// counted as sent: unless acked within the ack timeout it is delivered again.
    pub fn poll(&mut self, id: u64) -> Option<Delivery<M>> {
        let offset = self.queues.get_mut(&id)?.pop_first()?;
        let deadline_ms = self.after(self.config.ack_timeout);
        let entry = self.in_flight.get_mut(&offset)?;
        entry.place = Place::Sent {
            consumer: id,
            deadline_ms,
        };
        self.timers.insert((deadline_ms, offset));
        Some(Delivery {
            offset,
            message: entry.message.clone(),
            redeliveries: entry.failures,
        })
    }

    /// Acks `offset`: settled, it frees its window slot and the cursor moves over the acked
    /// prefix. Idempotent: an offset not in flight (acked before, never read, dead-lettered)
    /// is ignored. Returns whether it was in flight.
    pub fn ack(&mut self, offset: u64) -> bool {
        let Some(entry) = self.in_flight.remove(&offset) else {
            return false;
        };
        self.unplace(offset, entry.place);
        true
    }

    /// Nacks `offset`, sent and not yet acked: it comes again after `delay` (if `None`,
    /// [`SubscriptionConfig::nack_delay`] doubled per earlier failure, at most
    /// [`SubscriptionConfig::max_nack_delay`]), or is dead-lettered once it has used its
    /// redeliveries. A message not currently sent (acked, queued, already waiting) is left
    /// alone. Returns whether the Nack counted.
    pub fn nack(&mut self, offset: u64, delay: Option<Duration>, reason: &str) -> bool {
        match self.in_flight.get(&offset) {
            Some(entry) if matches!(entry.place, Place::Sent { .. }) => {
                let reason = if reason.is_empty() {
                    "nacked".to_owned()
                } else {
                    format!("nacked: {reason}")
                };
                self.fail(offset, &reason, Some(delay));
                self.dispatch();
                true
            }
            _ => false,
        }
    }

    /// When [`tick`](Self::tick) has something to do next (an ack deadline or a Nack delay),
    /// in the clock's milliseconds.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.timers.first().map(|(due, _)| *due)
    }

    /// Redelivers what timed out unacked and what a Nack delayed until now.
    pub fn tick(&mut self) {
        let now = self.clock.now_ms();
        let timeout = self.config.ack_timeout;
        while let Some(&(due, offset)) = self.timers.first() {
            if due > now {
                break;
            }
            self.timers.pop_first();
            let Some(entry) = self.in_flight.get_mut(&offset) else {
                continue;
            };
            match entry.place {
                Place::Sent { .. } => {
                    let reason = format!("not acked within the ack timeout of {timeout:?}");
                    self.fail(offset, &reason, None);
                }
                Place::Delayed { .. } => {
                    entry.place = Place::Unassigned;
                    self.unassigned.insert(offset);
                }
                Place::Unassigned | Place::Queued(_) => {}
            }
        }
        self.dispatch();
    }

    /// The messages dead-lettered since the last call, in the order they failed.
    pub fn take_dead_letters(&mut self) -> Vec<DeadLetter<M>> {
        std::mem::take(&mut self.dead_letters)
    }

    /// `now + by` on the clock, in milliseconds.
    fn after(&self, by: Duration) -> u64 {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.clock.now_ms().saturating_add(by)
    }

    /// Takes `offset` out of wherever it was placed (its queue, timer, the unassigned set).
    fn unplace(&mut self, offset: u64, place: Place) {
        match place {
            Place::Unassigned => {
                self.unassigned.remove(&offset);
            }
            Place::Queued(consumer) => {
                if let Some(queue) = self.queues.get_mut(&consumer) {
                    queue.remove(&offset);
                }
            }
            Place::Sent { deadline_ms, .. } => {
                self.timers.remove(&(deadline_ms, offset));
            }
            Place::Delayed { due_ms } => {
                self.timers.remove(&(due_ms, offset));
            }
        }
    }

    /// Consumer `id` is gone or detached: its queued messages go back to be placed again, its
    /// sent ones fail (redelivered at once).
    fn release(&mut self, id: u64, reason: &str) {
        self.queues.remove(&id);
        let mut sent = Vec::new();
        for (offset, entry) in &mut self.in_flight {
            match entry.place {
                Place::Queued(consumer) if consumer == id => {
                    entry.place = Place::Unassigned;
                    self.unassigned.insert(*offset);
                }
                Place::Sent { consumer, .. } if consumer == id => sent.push(*offset),
                _ => {}
            }
        }
        for offset in sent {
            self.fail(offset, reason, None);
        }
    }

    /// A delivery of `offset` failed. `nack_delay`: `None` redelivers at once; `Some(d)` after
    /// `d`, or after the default doubling delay when `d` is `None`.
    fn fail(&mut self, offset: u64, reason: &str, nack_delay: Option<Option<Duration>>) {
        let Some(entry) = self.in_flight.get(&offset) else {
            return;
        };
        let (place, failures) = (entry.place, entry.failures.saturating_add(1));
        self.unplace(offset, place);
        if failures > self.config.max_redeliveries {
            if let Some(entry) = self.in_flight.remove(&offset) {
                self.dead_letters.push(DeadLetter {
                    offset,
                    message: entry.message,
                    deliveries: failures,
                    reason: reason.to_owned(),
                });
            }
            return;
        }
        let delay = match nack_delay {
            None => Duration::ZERO,
            // The client chooses this delay: capped, or `u64::MAX` ms would park the message
            // (and its window slot and the cursor) for good.
            Some(Some(delay)) => delay.min(self.config.max_nack_delay),
            Some(None) => self.default_nack_delay(failures),
        };
        let place = if delay.is_zero() {
            self.unassigned.insert(offset);
            Place::Unassigned
        } else {
            let due_ms = self.after(delay);
            self.timers.insert((due_ms, offset));
            Place::Delayed { due_ms }
        };
        if let Some(entry) = self.in_flight.get_mut(&offset) {
            entry.failures = failures;
            entry.place = place;
        }
    }

    /// `nack_delay × 2^(failures − 1)`, at most `max_nack_delay`.
    fn default_nack_delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.config
            .nack_delay
            .saturating_mul(1 << doublings)
            .min(self.config.max_nack_delay)
    }

    /// Places every unassigned message with a consumer that can take it, in offset order.
    fn dispatch(&mut self) {
        let mut waiting = Vec::new();
        while let Some(offset) = self.unassigned.pop_first() {
            let Some(entry) = self.in_flight.get_mut(&offset) else {
                continue;
            };
            match self.members.pick(&entry.key) {
                Some(consumer) => {
                    entry.place = Place::Queued(consumer);
                    self.queues.entry(consumer).or_default().insert(offset);
                }
                // Only KeyShared can place a later message when this one found nobody.
                None if self.members.kind() == SubscriptionType::KeyShared => {
                    waiting.push(offset);
                }
                None => {
                    waiting.push(offset);
                    waiting.extend(std::mem::take(&mut self.unassigned));
                }
            }
        }
        self.unassigned.extend(waiting);
    }
}
