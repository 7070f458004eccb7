//! [`SubscriptionTable`]: which local connections subscribed to which channels and patterns,
//! indexed so a publication finds its subscribers without scanning every client, and each
//! connection is found once however many of its subscriptions match.
//!
//! Presence is per client id, not per connection: a client may briefly hold two connections
//! here (a reconnect whose old socket is not closed yet), so exact subscriptions are also
//! counted per (channel, client), and a client joins a channel with its first such
//! connection and leaves it with its last.

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
    /// Exact channel names and, per client id, how many of its connections subscribed.
    exact_clients: HashMap<String, HashMap<Arc<str>, usize>>,
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
    /// Adds `pattern` for `entry`'s connection.
    pub(crate) fn subscribe(&self, entry: &Arc<ClientEntry>, pattern: ChannelPattern) -> Changed {
        let mut index = write(&self.index);
        let text = pattern.as_str().to_owned();
        if !index
            .by_conn
            .entry(entry.conn_id)
            .or_default()
            .insert(text.clone())
        {
            return Changed::default();
        }
        let mut client = false;
        let subscribers = if pattern.is_exact() {
            let count = index
                .exact_clients
                .entry(text.clone())
                .or_default()
                .entry(entry.id.clone())
                .or_default();
            *count += 1;
            client = *count == 1;
            index.exact.entry(text).or_default()
        } else {
            &mut index
                .patterns
                .entry(text)
                .or_insert_with(|| (pattern, Subscribers::new()))
                .1
        };
        subscribers.insert(entry.conn_id, entry.clone());
        Changed {
            connection: true,
            client,
        }
    }

    /// Removes `pattern` (as written when subscribing) of connection `conn_id`.
    pub(crate) fn unsubscribe(&self, conn_id: u64, pattern: &str) -> Changed {
        let mut index = write(&self.index);
        let removed = index
            .by_conn
            .get_mut(&conn_id)
            .is_some_and(|set| set.remove(pattern));
        if !removed {
            return Changed::default();
        }
        let client = index.remove_subscriber(conn_id, pattern);
        if index.by_conn.get(&conn_id).is_some_and(HashSet::is_empty) {
            index.by_conn.remove(&conn_id);
        }
        Changed {
            connection: true,
            client,
        }
    }

    /// Removes every subscription of connection `conn_id` (it ended); the exact channels its
    /// client no longer holds through another connection here.
    pub(crate) fn remove_connection(&self, conn_id: u64) -> Vec<String> {
        let mut index = write(&self.index);
        let Some(patterns) = index.by_conn.remove(&conn_id) else {
            return Vec::new();
        };
        patterns
            .into_iter()
            .filter(|pattern| index.remove_subscriber(conn_id, pattern))
            .collect()
    }

    /// Whether `client` has a connection here subscribed to exactly `channel`.
    pub(crate) fn holds(&self, channel: &str, client: &str) -> bool {
        read(&self.index)
            .exact_clients
            .get(channel)
            .is_some_and(|clients| clients.contains_key(client))
    }

    /// The clients subscribed to exactly `channel` (not through a pattern), each once.
    pub(crate) fn exact_members(&self, channel: &str) -> Vec<Arc<str>> {
        read(&self.index)
            .exact_clients
            .get(channel)
            .map(|clients| clients.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Every (channel, client) of exact subscriptions for which `keep` holds, each once
    /// (a pair held by two connections would cancel itself out of a presence digest).
    pub(crate) fn exact_pairs(&self, keep: impl Fn(&str) -> bool) -> Vec<(String, String)> {
        read(&self.index)
            .exact_clients
            .iter()
            .filter(|(channel, _)| keep(channel))
            .flat_map(|(channel, clients)| {
                clients
                    .keys()
                    .map(|client| (channel.clone(), client.to_string()))
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

/// What a subscribe or unsubscribe changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Changed {
    /// The connection's subscriptions changed (it was not, or was, subscribed).
    pub(crate) connection: bool,
    /// The client's presence in the exact channel changed: its first connection here
    /// subscribed to it, or its last one left.
    pub(crate) client: bool,
}

impl Index {
    /// Removes one subscriber; whether its client left the exact channel `pattern` (no other
    /// connection of it holds it).
    fn remove_subscriber(&mut self, conn_id: u64, pattern: &str) -> bool {
        if let Some(subs) = self.exact.get_mut(pattern) {
            let removed = subs.remove(&conn_id);
            if subs.is_empty() {
                self.exact.remove(pattern);
            }
            return removed.is_some_and(|entry| self.release_client(pattern, &entry.id));
        } else if let Some((_, subs)) = self.patterns.get_mut(pattern) {
            subs.remove(&conn_id);
            if subs.is_empty() {
                self.patterns.remove(pattern);
            }
        }
        false
    }

    /// One connection of `client` no longer holds `channel`; whether it was the last.
    fn release_client(&mut self, channel: &str, client: &str) -> bool {
        let Some(clients) = self.exact_clients.get_mut(channel) else {
            return false;
        };
        let last = match clients.get_mut(client) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                clients.remove(client);
                true
            }
            None => false,
        };
        if clients.is_empty() {
            self.exact_clients.remove(channel);
        }
        last
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
        assert!(table.subscribe(&a, pattern("chat.room1")).connection);
        assert!(table.subscribe(&a, pattern("chat.*")).connection);
        assert!(table.subscribe(&a, pattern("chat.**")).connection);
        assert!(
            !table.subscribe(&a, pattern("chat.*")).connection,
            "already subscribed"
        );
        assert!(table.subscribe(&b, pattern("chat.*")).connection);
        assert_eq!(ids(table.matching("chat.room1")), ["a", "b"]);
        assert_eq!(ids(table.matching("chat.room1.typing")), ["a"]);
        assert!(table.matching("news").is_empty());
        // Dropping one of a's overlapping subscriptions keeps the others.
        assert!(table.unsubscribe(1, "chat.*").connection);
        assert!(!table.unsubscribe(1, "chat.*").connection);
        assert_eq!(ids(table.matching("chat.room1")), ["a", "b"]);
        assert_eq!(
            table.remove_connection(1),
            ["chat.room1"],
            "a's exact channels"
        );
        assert_eq!(ids(table.matching("chat.room1")), ["b"]);
        assert!(
            !table.unsubscribe(1, "chat.**").connection,
            "gone with the connection"
        );
    }

    #[test]
    fn a_client_holding_two_connections_joins_with_the_first_and_leaves_with_the_last() {
        let table = SubscriptionTable::default();
        let (old, new) = (entry("x", 1), entry("x", 2));
        let room = || ChannelPattern::parse("room.1").expect("pattern");
        assert!(table.subscribe(&old, room()).client, "first: joins");
        let second = table.subscribe(&new, room());
        assert!(second.connection && !second.client, "{second:?}");
        // Once per client: two pairs would cancel out in the XOR digest.
        assert_eq!(table.exact_pairs(|_| true), [("room.1".into(), "x".into())]);
        assert_eq!(table.exact_members("room.1").len(), 1);
        // The old connection ends (a reconnect replaced it): x is still here.
        assert!(table.remove_connection(1).is_empty());
        assert!(table.holds("room.1", "x"));
        let last = table.unsubscribe(2, "room.1");
        assert!(last.connection && last.client, "{last:?}");
        assert!(!table.holds("room.1", "x"));
        assert!(table.exact_pairs(|_| true).is_empty());
    }
}
