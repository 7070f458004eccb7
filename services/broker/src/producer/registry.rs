//! The producers this node holds: ids, names, Exclusive access and the per-topic limit.
//!
//! Danube's protocol has no call to close a producer, so a producer whose client vanished
//! would hold its place (and an Exclusive claim) for good. Every lookup of a producer (its
//! sends, its health checks, every 5 s from a live client) marks it seen; one not seen for
//! the idle timeout is released when another producer registers on its topic, or by the
//! sweep of every topic that registrations and the producers gauge run at most every half
//! timeout (so vanished producers on quiet topics do not stay). A released producer's next
//! send is refused, to be created again with its own access mode: re-attaching it silently
//! (as after a restart) would make an Exclusive producer a Shared one beside the producer that
//! took its place.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::topic::TopicName;

/// The id of producer `name` on `topic`: a stable 63-bit hash (FNV-1a 64 over the topic, a
/// NUL and the name, top bit cleared), so creating again answers the same id and, after a
/// restart, a send can be matched to its producer without any stored state.
pub fn producer_id(topic: &TopicName, name: &str) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let bytes = topic
        .as_str()
        .bytes()
        .chain(std::iter::once(0))
        .chain(name.bytes());
    let hash = bytes.fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    });
    hash & (u64::MAX >> 1)
}

/// A producer held here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerRecord {
    /// Its topic (a plain topic or one partition).
    pub topic: TopicName,
    /// Its name.
    pub name: String,
}

/// Why a producer was not registered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The topic is held exclusively by another producer, or an Exclusive producer asked for a
    /// topic others already write to.
    #[error("topic {topic} has producer {holder:?}; Exclusive access excludes {name:?}")]
    Exclusive {
        /// The topic.
        topic: TopicName,
        /// A producer already there.
        holder: String,
        /// The producer refused.
        name: String,
    },
    /// The topic has as many producers as allowed.
    #[error("topic {topic} already has {limit} producers (max_producers_per_topic)")]
    Limit {
        /// The topic.
        topic: TopicName,
        /// The limit.
        limit: usize,
    },
    /// Two (topic, name) pairs hash to one id (astronomically rare; refused, not merged).
    #[error("producer id {id} of {name:?} on {topic} is taken by another producer")]
    IdCollision {
        /// The id.
        id: u64,
        /// The topic.
        topic: TopicName,
        /// The name.
        name: String,
    },
}

#[derive(Debug, Default)]
struct TopicProducers {
    names: BTreeSet<String>,
    exclusive: Option<String>,
}

/// A producer record and when its client was last heard of.
#[derive(Debug)]
struct Seen {
    record: ProducerRecord,
    last_seen: Instant,
}

/// How many released producer ids are remembered (oldest forgotten first): a client that is
/// quiet for longer than it takes this many others to be released re-attaches as after a
/// restart.
const RELEASED_REMEMBERED: usize = 4_096;

#[derive(Debug, Default)]
struct Held {
    producers: HashMap<u64, Seen>,
    /// Topics with at least one producer.
    topics: HashMap<TopicName, TopicProducers>,
    /// The producers released for idleness and not created again, by id, with the sequence
    /// number of their entry in `released_order`.
    released: HashMap<u64, u64>,
    released_order: VecDeque<(u64, u64)>,
    released_sequence: u64,
    /// When the next sweep of every topic is due.
    next_sweep: Option<Instant>,
}

impl Held {
    /// Releases producer `name` of `topic` and remembers its id.
    fn release(&mut self, topic: &TopicName, name: &str) {
        tracing::info!(%topic, producer = %name, "producer released: its client was not heard from within the idle timeout");
        if let Some(producers) = self.topics.get_mut(topic) {
            producers.names.remove(name);
            if producers.exclusive.as_deref() == Some(name) {
                producers.exclusive = None;
            }
            if producers.names.is_empty() {
                self.topics.remove(topic);
            }
        }
        let id = producer_id(topic, name);
        self.producers.remove(&id);
        let sequence = self.released_sequence;
        self.released_sequence = sequence.wrapping_add(1);
        self.released.insert(id, sequence);
        self.released_order.push_back((id, sequence));
        while self.released_order.len() > RELEASED_REMEMBERED {
            let Some((forgotten, sequence)) = self.released_order.pop_front() else {
                break;
            };
            // Only the entry of its latest release: an id released again has a newer one.
            if self.released.get(&forgotten) == Some(&sequence) {
                self.released.remove(&forgotten);
            }
        }
    }

    /// Releases every producer not seen since `before`, on any topic.
    fn sweep(&mut self, before: Instant) {
        let idle: Vec<(TopicName, String)> = self
            .producers
            .values()
            .filter(|seen| seen.last_seen < before)
            .map(|seen| (seen.record.topic.clone(), seen.record.name.clone()))
            .collect();
        for (topic, name) in idle {
            self.release(&topic, &name);
        }
    }

    /// Releases the producers of `topic` other than `keep` not seen since `before`.
    fn release_idle(&mut self, topic: &TopicName, keep: &str, before: Instant) {
        let Some(producers) = self.topics.get_mut(topic) else {
            return;
        };
        let idle: Vec<String> = producers
            .names
            .iter()
            .filter(|name| *name != keep)
            .filter(|name| {
                self.producers
                    .get(&producer_id(topic, name))
                    .is_none_or(|seen| seen.last_seen < before)
            })
            .cloned()
            .collect();
        for name in idle {
            self.release(topic, &name);
        }
    }
}

/// The default [`ProducerRegistry::with_idle_timeout`]: six missed 5 s health checks.
pub const DEFAULT_PRODUCER_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The producers held by this node (short locks, never across an `.await`).
#[derive(Debug)]
pub struct ProducerRegistry {
    max_per_topic: usize,
    idle_timeout: Duration,
    held: Mutex<Held>,
}

impl ProducerRegistry {
    /// No producers; at most `max_per_topic` per topic; idle ones released after
    /// [`DEFAULT_PRODUCER_IDLE_TIMEOUT`].
    pub fn new(max_per_topic: usize) -> ProducerRegistry {
        ProducerRegistry::with_idle_timeout(max_per_topic, DEFAULT_PRODUCER_IDLE_TIMEOUT)
    }

    /// No producers; at most `max_per_topic` per topic; a producer not seen (no send, no
    /// health check) for `idle_timeout` is released when another registers on its topic, or
    /// within half that again by the sweep of every topic (run by registrations and
    /// [`len`](Self::len)).
    pub fn with_idle_timeout(max_per_topic: usize, idle_timeout: Duration) -> ProducerRegistry {
        ProducerRegistry {
            max_per_topic,
            idle_timeout,
            held: Mutex::new(Held::default()),
        }
    }

    /// Registers producer `name` on `topic` (idempotent) and returns its id.
    ///
    /// Errors: [`RegisterError`].
    pub fn register(
        &self,
        topic: &TopicName,
        name: &str,
        exclusive: bool,
    ) -> Result<u64, RegisterError> {
        let id = producer_id(topic, name);
        let now = Instant::now();
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        self.sweep_if_due(&mut held, now);
        if let Some(before) = now.checked_sub(self.idle_timeout) {
            held.release_idle(topic, name, before);
        }
        if let Some(Seen { record, .. }) = held.producers.get(&id)
            && (record.topic != *topic || record.name != name)
        {
            return Err(RegisterError::IdCollision {
                id,
                topic: topic.clone(),
                name: name.to_owned(),
            });
        }
        let producers = held.topics.entry(topic.clone()).or_default();
        let refuse = |holder: &str| RegisterError::Exclusive {
            topic: topic.clone(),
            holder: holder.to_owned(),
            name: name.to_owned(),
        };
        if let Some(holder) = producers.exclusive.as_deref()
            && holder != name
        {
            return Err(refuse(holder));
        }
        let known = producers.names.contains(name);
        if exclusive && let Some(other) = producers.names.iter().find(|other| *other != name) {
            return Err(refuse(other));
        }
        if !known && producers.names.len() >= self.max_per_topic {
            return Err(RegisterError::Limit {
                topic: topic.clone(),
                limit: self.max_per_topic,
            });
        }
        if exclusive {
            producers.exclusive = Some(name.to_owned());
        }
        producers.names.insert(name.to_owned());
        held.released.remove(&id);
        held.producers.insert(
            id,
            Seen {
                record: ProducerRecord {
                    topic: topic.clone(),
                    name: name.to_owned(),
                },
                last_seen: now,
            },
        );
        Ok(id)
    }

    /// The producer with `id`, if held here; marks it seen.
    pub fn get(&self, id: u64) -> Option<ProducerRecord> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let seen = held.producers.get_mut(&id)?;
        seen.last_seen = Instant::now();
        Some(seen.record.clone())
    }

    /// Whether producer `id` was released here for idleness and not created again since (its
    /// client must create it again rather than re-attach by its id).
    pub fn was_released(&self, id: u64) -> bool {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .released
            .contains_key(&id)
    }

    /// How many producers are held here (the idle ones released first, when a sweep is due).
    pub fn len(&self) -> usize {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        self.sweep_if_due(&mut held, Instant::now());
        held.producers.len()
    }

    /// Sweeps every topic for idle producers, at most every half idle timeout: the scan is
    /// over all producers, so it is not run on every call.
    fn sweep_if_due(&self, held: &mut Held, now: Instant) {
        let interval = self.idle_timeout / 2;
        let due = *held.next_sweep.get_or_insert(now + interval);
        if now < due {
            return;
        }
        held.next_sweep = Some(now + interval);
        if let Some(before) = now.checked_sub(self.idle_timeout) {
            held.sweep(before);
        }
    }

    /// Whether no producer is held here.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether producer `id` is held here; marks it seen.
    pub fn holds(&self, id: u64) -> bool {
        self.get(id).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> TopicName {
        TopicName::new(name).expect(name)
    }

    #[test]
    fn ids_are_stable_63_bit_and_differ_by_topic_and_name() {
        let orders = topic("/default/orders");
        let id = producer_id(&orders, "p1");
        assert_eq!(id, producer_id(&orders, "p1"));
        assert_eq!(id >> 63, 0);
        // Pinned (FNV-1a computed independently): ids must not change between builds, as
        // clients re-attach by them.
        assert_eq!(id, 0x1a52_40a6_66c1_3d2c, "{id:#x}");
        assert_ne!(id, producer_id(&orders, "p2"));
        assert_ne!(id, producer_id(&topic("/default/orders2"), "p1"));
        // The separator keeps ("/a/bc", "d") apart from ("/a/b", "cd").
        assert_ne!(
            producer_id(&topic("/a/bc"), "d"),
            producer_id(&topic("/a/b"), "cd")
        );
    }

    #[test]
    fn exclusive_limit_and_idempotence() {
        let registry = ProducerRegistry::new(2);
        let orders = topic("/default/orders");
        let id = registry.register(&orders, "p1", false).expect("first");
        assert_eq!(
            registry.register(&orders, "p1", false),
            Ok(id),
            "idempotent"
        );
        assert!(registry.holds(id));
        assert!(matches!(
            registry.register(&orders, "x", true),
            Err(RegisterError::Exclusive { .. })
        ));
        registry.register(&orders, "p2", false).expect("second");
        assert!(matches!(
            registry.register(&orders, "p3", false),
            Err(RegisterError::Limit { limit: 2, .. })
        ));
        assert!(
            registry.register(&orders, "p2", false).is_ok(),
            "known names pass the limit"
        );

        let solo = topic("/default/solo");
        registry.register(&solo, "owner", true).expect("exclusive");
        assert_eq!(
            registry.register(&solo, "owner", true),
            Ok(producer_id(&solo, "owner"))
        );
        assert!(matches!(
            registry.register(&solo, "other", false),
            Err(RegisterError::Exclusive { holder, .. }) if holder == "owner"
        ));
        assert_eq!(
            registry.get(producer_id(&solo, "owner")),
            Some(ProducerRecord {
                topic: solo,
                name: "owner".into()
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_exclusive_producer_not_heard_from_is_released_for_another() {
        let idle = Duration::from_secs(30);
        let registry = ProducerRegistry::with_idle_timeout(2, idle);
        let solo = topic("/default/solo");
        let owner = registry.register(&solo, "owner", true).expect("exclusive");
        // Health checks keep it: well past the timeout in total, never idle that long.
        for _ in 0..4 {
            tokio::time::advance(idle / 2).await;
            assert!(registry.holds(owner));
            assert!(matches!(
                registry.register(&solo, "other", true),
                Err(RegisterError::Exclusive { ref holder, .. }) if holder == "owner"
            ));
        }
        // Its client vanishes: after the timeout another takes the topic, exclusively.
        tokio::time::advance(idle + Duration::from_millis(1)).await;
        let other = registry.register(&solo, "other", true).expect("released");
        assert!(!registry.holds(owner), "released");
        assert_eq!(registry.len(), 1);
        // The old one coming back is refused while the new one is alive.
        assert!(matches!(
            registry.register(&solo, "owner", false),
            Err(RegisterError::Exclusive { ref holder, .. }) if holder == "other"
        ));
        assert!(registry.holds(other));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_producers_free_their_place_under_the_limit() {
        let idle = Duration::from_secs(30);
        let registry = ProducerRegistry::with_idle_timeout(2, idle);
        let orders = topic("/default/orders");
        let gone = registry.register(&orders, "gone", false).expect("first");
        tokio::time::advance(idle / 2).await;
        let live = registry.register(&orders, "live", false).expect("second");
        assert!(matches!(
            registry.register(&orders, "third", false),
            Err(RegisterError::Limit { limit: 2, .. })
        ));
        tokio::time::advance(idle / 2 + Duration::from_millis(1)).await;
        registry
            .register(&orders, "third", false)
            .expect("gone's place");
        assert!(!registry.holds(gone));
        assert!(registry.holds(live));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_producers_on_quiet_topics_are_swept_and_their_topics_dropped() {
        let idle = Duration::from_secs(30);
        let registry = ProducerRegistry::with_idle_timeout(2, idle);
        let quiet = topic("/default/quiet");
        let busy = topic("/default/busy");
        let gone = registry.register(&quiet, "gone", true).expect("first");
        let live = registry.register(&busy, "live", false).expect("second");
        assert_eq!(registry.len(), 2);
        for _ in 0..4 {
            tokio::time::advance(idle / 2).await;
            assert!(registry.holds(live));
        }
        // Nobody registered on `quiet`: the gauge's count sweeps it all the same.
        assert_eq!(registry.len(), 1, "the vanished producer is not counted");
        assert!(registry.was_released(gone));
        let topics = registry.held.lock().expect("unpoisoned").topics.len();
        assert_eq!(topics, 1, "the empty topic entry is dropped");
        // Creating it again clears the release.
        registry.register(&quiet, "gone", true).expect("again");
        assert!(!registry.was_released(gone));
    }

    #[tokio::test(start_paused = true)]
    async fn a_registration_sweeps_idle_producers_of_other_topics() {
        let idle = Duration::from_secs(30);
        let registry = ProducerRegistry::with_idle_timeout(2, idle);
        let gone = registry
            .register(&topic("/default/quiet"), "gone", false)
            .expect("first");
        tokio::time::advance(idle * 2).await;
        registry
            .register(&topic("/default/other"), "new", false)
            .expect("second");
        assert!(registry.was_released(gone));
        assert_eq!(registry.held.lock().expect("unpoisoned").producers.len(), 1);
    }
}
