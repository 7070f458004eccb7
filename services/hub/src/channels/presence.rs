//! Channel presence: which clients are subscribed (by exact name) to channels whose rule
//! asks for presence, on this node (from the subscription table) and on the others (the
//! [`PresenceBook`], fed by presence messages on the bus).
//!
//! Consistency: joins and leaves travel as bus messages at once. A lost one is repaired by
//! the heartbeat: each carries a digest of the node's presence, a node whose book disagrees
//! asks for a snapshot (at most once per heartbeat interval); a node that stops sending
//! heartbeats is forgotten after three intervals. So every node's view converges within
//! three heartbeat intervals (6 s with the default 2 s) of the last change.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// The runtime's clock, so tests can move it (paused clock) as they do the heartbeats.
use tokio::time::Instant;

use super::rules::{ChannelRule, rule_for};
use crate::locks::lock;
use crate::metrics::Metrics;

/// One (channel, client) pair's contribution to a presence digest (FNV-1a: stable across
/// builds, so nodes of different versions agree).
fn pair_hash(channel: &str, client: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in channel.bytes().chain([0]).chain(client.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The order-independent digest of a set of (channel, client) pairs.
pub(crate) fn digest<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> u64 {
    pairs
        .into_iter()
        .fold(0, |acc, (channel, client)| acc ^ pair_hash(channel, client))
}

#[derive(Default)]
struct NodeChannels {
    pairs: HashSet<(String, String)>,
    asked: Option<Instant>,
}

/// A presence change to tell local subscribers about.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) joined: bool,
    pub(crate) channel: String,
    pub(crate) client: String,
}

/// Which channels track presence, and what other nodes reported.
pub(crate) struct PresenceBook {
    rules: Vec<ChannelRule>,
    remote: Mutex<HashMap<String, NodeChannels>>,
    /// Counts the snapshots asked for (the repair path is otherwise invisible).
    metrics: Arc<Metrics>,
}

impl PresenceBook {
    pub(crate) fn new(rules: Vec<ChannelRule>, metrics: Arc<Metrics>) -> PresenceBook {
        PresenceBook {
            rules,
            remote: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// Whether `channel`'s rule asks for presence.
    pub(crate) fn tracks(&self, channel: &str) -> bool {
        rule_for(&self.rules, channel).is_some_and(|r| r.presence)
    }

    /// `client` joined `channel` on `node`; the change, if it is one.
    pub(crate) fn join(&self, node: &str, channel: &str, client: &str) -> Option<Change> {
        let mut remote = lock(&self.remote);
        let pairs = &mut remote.entry(node.to_owned()).or_default().pairs;
        pairs
            .insert((channel.to_owned(), client.to_owned()))
            .then(|| Change {
                joined: true,
                channel: channel.to_owned(),
                client: client.to_owned(),
            })
    }

    /// `client` left `channel` on `node`; the change, if it is one.
    pub(crate) fn leave(&self, node: &str, channel: &str, client: &str) -> Option<Change> {
        let mut remote = lock(&self.remote);
        let removed = remote
            .get_mut(node)
            .is_some_and(|n| n.pairs.remove(&(channel.to_owned(), client.to_owned())));
        removed.then(|| Change {
            joined: false,
            channel: channel.to_owned(),
            client: client.to_owned(),
        })
    }

    /// Part of `node`'s snapshot (part 0 replaces what was known); the changes it makes.
    pub(crate) fn snapshot(
        &self,
        node: &str,
        first_part: bool,
        pairs: Vec<(String, String)>,
    ) -> Vec<Change> {
        let mut remote = lock(&self.remote);
        let known = remote.entry(node.to_owned()).or_default();
        let mut changes = Vec::new();
        let incoming: HashSet<(String, String)> = pairs.into_iter().collect();
        if first_part {
            for (channel, client) in known.pairs.difference(&incoming) {
                changes.push(Change {
                    joined: false,
                    channel: channel.clone(),
                    client: client.clone(),
                });
            }
            known.pairs.retain(|pair| incoming.contains(pair));
        }
        for pair in incoming {
            if !known.pairs.contains(&pair) {
                changes.push(Change {
                    joined: true,
                    channel: pair.0.clone(),
                    client: pair.1.clone(),
                });
                known.pairs.insert(pair);
            }
        }
        changes
    }

    /// Forgets `node` (it left or fell silent); its clients leave.
    pub(crate) fn forget(&self, node: &str) -> Vec<Change> {
        let gone = lock(&self.remote).remove(node);
        gone.map(|n| {
            n.pairs
                .into_iter()
                .map(|(channel, client)| Change {
                    joined: false,
                    channel,
                    client,
                })
                .collect()
        })
        .unwrap_or_default()
    }

    /// Whether `node`'s heartbeat digest disagrees with the book and it was not asked for a
    /// snapshot within `interval` (it is marked asked, and counted in
    /// [`Metrics::presence_snapshot_requests`]).
    pub(crate) fn needs_snapshot(
        &self,
        node: &str,
        their_digest: u64,
        now: Instant,
        interval: Duration,
    ) -> bool {
        let mut remote = lock(&self.remote);
        let known = remote.entry(node.to_owned()).or_default();
        let ours = digest(known.pairs.iter().map(|(c, k)| (c.as_str(), k.as_str())));
        if ours == their_digest
            || known
                .asked
                .is_some_and(|t| now.duration_since(t) < interval)
        {
            return false;
        }
        known.asked = Some(now);
        Metrics::inc(&self.metrics.presence_snapshot_requests);
        true
    }

    /// How many other nodes hold `client` in `channel`.
    pub(crate) fn nodes_holding(&self, channel: &str, client: &str) -> usize {
        let pair = (channel.to_owned(), client.to_owned());
        lock(&self.remote)
            .values()
            .filter(|n| n.pairs.contains(&pair))
            .count()
    }

    /// Clients of other nodes in `channel`, with their node.
    pub(crate) fn remote_members(&self, channel: &str) -> Vec<(String, String)> {
        lock(&self.remote)
            .iter()
            .flat_map(|(node, n)| {
                n.pairs
                    .iter()
                    .filter(|(c, _)| c == channel)
                    .map(|(_, client)| (client.clone(), node.clone()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(c, k)| (c.to_string(), k.to_string()))
            .collect()
    }

    #[test]
    fn joins_leaves_and_snapshots_report_only_changes() {
        let book = PresenceBook::new(Vec::new(), Arc::default());
        assert!(book.join("b", "room", "x").is_some());
        assert!(book.join("b", "room", "x").is_none());
        assert!(book.leave("b", "room", "y").is_none());
        let changes = book.snapshot("b", true, pairs(&[("room", "y")]));
        assert_eq!(changes.len(), 2, "x left, y joined: {changes:?}");
        assert_eq!(
            book.remote_members("room"),
            [("y".to_string(), "b".to_string())]
        );
        assert_eq!(book.forget("b").len(), 1);
        assert!(book.remote_members("room").is_empty());
    }

    #[test]
    fn a_digest_mismatch_asks_once_per_interval() {
        let metrics = Arc::new(Metrics::default());
        let book = PresenceBook::new(Vec::new(), metrics.clone());
        let now = Instant::now();
        let second = Duration::from_secs(1);
        book.join("b", "room", "x");
        let same = digest([("room", "x")]);
        assert!(!book.needs_snapshot("b", same, now, second));
        assert!(book.needs_snapshot("b", 0, now, second));
        assert!(!book.needs_snapshot("b", 0, now, second), "asked already");
        assert!(book.needs_snapshot("b", 0, now + second, second));
        assert_eq!(Metrics::get(&metrics.presence_snapshot_requests), 2);
        assert_eq!(
            digest([("a", "b"), ("c", "d")]),
            digest([("c", "d"), ("a", "b")])
        );
    }
}
