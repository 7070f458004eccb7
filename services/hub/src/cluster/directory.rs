//! The cluster's presence directory as one node sees it: which node holds which client.
//!
//! Kept up to date from `presence` bus messages (join, leave, snapshots, heartbeats); a node
//! not heard from for three heartbeat intervals is forgotten with its clients, so pushes to
//! them fail with `ClientNotFound` instead of vanishing into a dead node's inbox. Silence only
//! counts while this node's own bus works: a node we could not hear is not a dead node.

use std::collections::HashMap;
use std::time::Duration;

// The runtime's clock, so tests can move it (paused clock) as they do the heartbeat timers.
use tokio::time::Instant;

#[derive(Default)]
struct NodeState {
    clients: HashMap<String, i64>,
    last_seen: Option<Instant>,
    /// When this node last asked that one for a snapshot (to not ask on every heartbeat).
    asked: Option<Instant>,
}

/// Remote nodes and their clients.
#[derive(Default)]
pub(crate) struct Directory {
    nodes: HashMap<String, NodeState>,
    owners: HashMap<String, String>,
}

impl Directory {
    /// The node holding `client`, if any remote node does.
    pub(crate) fn owner(&self, client: &str) -> Option<&str> {
        self.owners.get(client).map(String::as_str)
    }

    pub(crate) fn remote_count(&self) -> usize {
        self.owners.len()
    }

    pub(crate) fn seen(&mut self, node: &str, now: Instant) {
        self.nodes.entry(node.to_owned()).or_default().last_seen = Some(now);
    }

    /// Records `client` at `node` (registered at `since` ms). A registration at another node
    /// that is newer wins; an older one is ignored.
    pub(crate) fn join(&mut self, node: &str, client: &str, since: i64, now: Instant) {
        if let Some(previous) = self.owners.get(client).cloned()
            && previous != node
        {
            let previous_since = self
                .nodes
                .get(&previous)
                .and_then(|n| n.clients.get(client))
                .copied()
                .unwrap_or(i64::MIN);
            if (previous_since, previous.as_str()) > (since, node) {
                return;
            }
            if let Some(state) = self.nodes.get_mut(&previous) {
                state.clients.remove(client);
            }
        }
        let state = self.nodes.entry(node.to_owned()).or_default();
        state.last_seen = Some(now);
        state.clients.insert(client.to_owned(), since);
        self.owners.insert(client.to_owned(), node.to_owned());
    }

    pub(crate) fn leave(&mut self, node: &str, client: &str) {
        if let Some(state) = self.nodes.get_mut(node) {
            state.clients.remove(client);
        }
        if self.owners.get(client).map(String::as_str) == Some(node) {
            self.owners.remove(client);
        }
    }

    /// Replaces (first part) or extends what is known of `node`'s clients.
    pub(crate) fn snapshot(
        &mut self,
        node: &str,
        first_part: bool,
        clients: &[(String, i64)],
        now: Instant,
    ) {
        if first_part {
            self.forget(node);
        }
        for (client, since) in clients {
            self.join(node, client, *since, now);
        }
        self.seen(node, now);
    }

    /// Whether a heartbeat claiming `count` clients disagrees with what is known, and this
    /// node has not asked for a snapshot within `interval`.
    pub(crate) fn needs_snapshot(
        &mut self,
        node: &str,
        count: usize,
        now: Instant,
        interval: Duration,
    ) -> bool {
        let state = self.nodes.entry(node.to_owned()).or_default();
        state.last_seen = Some(now);
        if state.clients.len() == count {
            return false;
        }
        if state
            .asked
            .is_some_and(|t| now.duration_since(t) < interval)
        {
            return false;
        }
        state.asked = Some(now);
        true
    }

    pub(crate) fn forget(&mut self, node: &str) {
        if let Some(state) = self.nodes.remove(node) {
            for client in state.clients.keys() {
                if self.owners.get(client).map(String::as_str) == Some(node) {
                    self.owners.remove(client);
                }
            }
        }
    }

    /// Forgets nodes not heard from within `silence`, counted from `listening_since` at the
    /// earliest (when this node's bus last started working: no node could be heard before);
    /// returns their ids.
    pub(crate) fn expire(
        &mut self,
        now: Instant,
        silence: Duration,
        listening_since: Instant,
    ) -> Vec<String> {
        let stale: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, s)| {
                let heard = s
                    .last_seen
                    .map_or(listening_since, |t| t.max(listening_since));
                now.saturating_duration_since(heard) > silence
            })
            .map(|(n, _)| n.clone())
            .collect();
        for node in &stale {
            self.forget(node);
        }
        stale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_registration_wins() {
        let now = Instant::now();
        let mut d = Directory::default();
        d.join("a", "c1", 100, now);
        d.join("b", "c1", 200, now);
        assert_eq!(d.owner("c1"), Some("b"));
        d.join("a", "c1", 150, now); // older than b's: ignored
        assert_eq!(d.owner("c1"), Some("b"));
        d.leave("a", "c1"); // a's leave does not remove b's client
        assert_eq!(d.owner("c1"), Some("b"));
        d.leave("b", "c1");
        assert_eq!(d.owner("c1"), None);
    }

    #[test]
    fn snapshots_replace_and_silent_nodes_expire() {
        let now = Instant::now();
        let mut d = Directory::default();
        d.join("a", "c1", 1, now);
        d.snapshot("a", true, &[("c2".into(), 2)], now);
        assert_eq!((d.owner("c1"), d.owner("c2")), (None, Some("a")));
        assert!(!d.needs_snapshot("a", 1, now, Duration::from_secs(1)));
        assert!(d.needs_snapshot("a", 5, now, Duration::from_secs(1)));
        assert!(
            !d.needs_snapshot("a", 5, now, Duration::from_secs(1)),
            "asked recently"
        );
        let later = now + Duration::from_secs(10);
        let silence = Duration::from_secs(6);
        assert_eq!(
            d.expire(later, silence, later - Duration::from_secs(1)),
            Vec::<String>::new(),
            "our bus worked for 1 s only: a could not have been heard before"
        );
        assert_eq!(d.expire(later, silence, now), vec!["a".to_string()]);
        assert_eq!(d.remote_count(), 0);
    }
}
