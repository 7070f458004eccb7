//! [`SubscriptionTable`]: which local connections subscribed to which channels and patterns,
//! indexed so a publication finds its subscribers without scanning every client, and each
//! connection is found once however many of its subscriptions match.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use super::pattern::ChannelPattern;
use crate::client::ClientEntry;
use crate::locks::{read, write};

type Subscribers = HashMap<u64, Arc<ClientEntry>>;

#[derive(Default)]
struct Index {
    /// Exact channel names and their subscribers, by connection id.
    exact: HashMap<String, Subscribers>,
    /// Wildcard patterns (by their text) and their subscribers.
    patterns: HashMap<String, (ChannelPattern, Subscribers)>,
    /// What each connection subscribed to, for unsubscribing everything when it ends.
    by_conn: HashMap<u64, HashSet<String>>,
}

/// The subscriptions of this node's connections.
#[derive(Default)]
pub(crate) struct SubscriptionTable {
    index: RwLock<Index>,
}

impl SubscriptionTable {
    /// Adds `pattern` for `entry`'s connection; false when it was already subscribed to it.
    pub(crate) fn subscribe(&self, entry: &Arc<ClientEntry>, pattern: ChannelPattern) -> bool {
        let mut index = write(&self.index);
        let text = pattern.as_str().to_owned();
        if !index
            .by_conn
            .entry(entry.conn_id)
            .or_default()
            .insert(text.clone())
        {
            return false;
        }
        let subscribers = if pattern.is_exact() {
            index.exact.entry(text).or_default()
        } else {
            &mut index
                .patterns
                .entry(text)
                .or_insert_with(|| (pattern, Subscribers::new()))
                .1
        };
        subscribers.insert(entry.conn_id, entry.clone());
        true
    }

    /// Removes `pattern` (as written when subscribing) of connection `conn_id`; false when it
    /// was not subscribed.
    pub(crate) fn unsubscribe(&self, conn_id: u64, pattern: &str) -> bool {
        let mut index = write(&self.index);
        let removed = index
            .by_conn
            .get_mut(&conn_id)
            .is_some_and(|set| set.remove(pattern));
        if removed {
            index.remove_subscriber(conn_id, pattern);
            if index.by_conn.get(&conn_id).is_some_and(HashSet::is_empty) {
                index.by_conn.remove(&conn_id);
            }
        }
        removed
    }

    /// Removes every subscription of connection `conn_id` (it ended); what it had.
    pub(crate) fn remove_connection(&self, conn_id: u64) -> Vec<String> {
        let mut index = write(&self.index);
        let Some(patterns) = index.by_conn.remove(&conn_id) else {
            return Vec::new();
        };
        for pattern in &patterns {
            index.remove_subscriber(conn_id, pattern);
        }
        patterns.into_iter().collect()
    }

    /// The clients subscribed to exactly `channel` (not through a pattern).
    pub(crate) fn exact_members(&self, channel: &str) -> Vec<Arc<str>> {
        read(&self.index)
            .exact
            .get(channel)
            .map(|subs| subs.values().map(|e| e.id.clone()).collect())
            .unwrap_or_default()
    }

    /// Every (channel, client) of exact subscriptions for which `keep` holds.
    pub(crate) fn exact_pairs(&self, keep: impl Fn(&str) -> bool) -> Vec<(String, String)> {
        read(&self.index)
            .exact
            .iter()
            .filter(|(channel, _)| keep(channel))
            .flat_map(|(channel, subs)| {
                subs.values()
                    .map(|e| (channel.clone(), e.id.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Every connection with at least one subscription matching `channel`, each once.
    pub(crate) fn matching(&self, channel: &str) -> Vec<Arc<ClientEntry>> {
        let index = read(&self.index);
        let mut found: HashMap<u64, Arc<ClientEntry>> = index
            .exact
            .get(channel)
            .map(|subs| subs.iter().map(|(k, v)| (*k, v.clone())).collect())
            .unwrap_or_default();
        for (pattern, subs) in index.patterns.values() {
            if pattern.matches(channel) {
                for (conn, entry) in subs {
                    found.entry(*conn).or_insert_with(|| entry.clone());
                }
            }
        }
        found.into_values().collect()
    }
}

impl Index {
    fn remove_subscriber(&mut self, conn_id: u64, pattern: &str) {
        if let Some(subs) = self.exact.get_mut(pattern) {
            subs.remove(&conn_id);
            if subs.is_empty() {
                self.exact.remove(pattern);
            }
        } else if let Some((_, subs)) = self.patterns.get_mut(pattern) {
            subs.remove(&conn_id);
            if subs.is_empty() {
                self.patterns.remove(pattern);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    fn entry(id: &str, conn: u64) -> Arc<ClientEntry> {
        let (tx, _rx) = mpsc::channel(1);
        Arc::new(ClientEntry::new(
            id.into(),
            conn,
            tx,
            CancellationToken::new(),
            Default::default(),
        ))
    }

    fn ids(mut found: Vec<Arc<ClientEntry>>) -> Vec<String> {
        found.sort_by_key(|e| e.conn_id);
        found.iter().map(|e| e.id.to_string()).collect()
    }

    #[test]
    fn overlapping_subscriptions_find_a_connection_once() {
        let table = SubscriptionTable::default();
        let (a, b) = (entry("a", 1), entry("b", 2));
        let pattern = |t| ChannelPattern::parse(t).expect(t);
        assert!(table.subscribe(&a, pattern("chat.room1")));
        assert!(table.subscribe(&a, pattern("chat.*")));
        assert!(table.subscribe(&a, pattern("chat.**")));
        assert!(
            !table.subscribe(&a, pattern("chat.*")),
            "already subscribed"
        );
        assert!(table.subscribe(&b, pattern("chat.*")));
        assert_eq!(ids(table.matching("chat.room1")), ["a", "b"]);
        assert_eq!(ids(table.matching("chat.room1.typing")), ["a"]);
        assert!(table.matching("news").is_empty());
        // Dropping one of a's overlapping subscriptions keeps the others.
        assert!(table.unsubscribe(1, "chat.*"));
        assert!(!table.unsubscribe(1, "chat.*"));
        assert_eq!(ids(table.matching("chat.room1")), ["a", "b"]);
        assert_eq!(table.remove_connection(1).len(), 2);
        assert_eq!(ids(table.matching("chat.room1")), ["b"]);
        assert!(!table.unsubscribe(1, "chat.**"), "gone with the connection");
    }
}
