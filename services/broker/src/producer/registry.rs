//! The producers this node holds: ids, names, Exclusive access and the per-topic limit.
//!
//! Danube's protocol has no call to close a producer, so a producer whose client vanished
//! would hold its place (and an Exclusive claim) for good. Every lookup of a producer (its
//! sends, its health checks, every 5 s from a live client) marks it seen; one not seen for
//! the idle timeout is released when another producer registers on its topic. A released
//! producer that comes back re-attaches by its id like after a restart.

use std::collections::{BTreeSet, HashMap};
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

#[derive(Debug, Default)]
struct Held {
    producers: HashMap<u64, Seen>,
    topics: HashMap<TopicName, TopicProducers>,
}

impl Held {
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
            tracing::info!(%topic, producer = %name, "producer released: its client was not heard from within the idle timeout");
            producers.names.remove(&name);
            if producers.exclusive.as_deref() == Some(name.as_str()) {
                producers.exclusive = None;
            }
            self.producers.remove(&producer_id(topic, &name));
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
    /// health check) for `idle_timeout` is released when another registers on its topic.
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

    /// How many producers are held here.
    pub fn len(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .producers
            .len()
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
}
