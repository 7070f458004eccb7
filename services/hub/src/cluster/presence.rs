//! Presence messages on the `presence` topic: how nodes learn who holds which client, and
//! the [`Announcer`] that queues this node's own for publishing.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// Clients per snapshot message (keeps each bus payload well under etcd's 1.5 MiB limit).
const SNAPSHOT_PART: usize = 2000;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Presence {
    /// `client` registered at `node` at `since` (ms).
    Join {
        node: String,
        client: String,
        since: i64,
    },
    /// `client` left `node`.
    Leave { node: String, client: String },
    /// `node` is alive and holds `clients` clients; `channels` is the digest of its channel
    /// presence (0 from nodes before channels).
    Alive {
        node: String,
        clients: usize,
        #[serde(default)]
        channels: u64,
    },
    /// `client` on `node` subscribed to presence channel `channel`.
    ChannelJoin {
        node: String,
        channel: String,
        client: String,
    },
    /// `client` on `node` left presence channel `channel`.
    ChannelLeave {
        node: String,
        channel: String,
        client: String,
    },
    /// Part of `node`'s channel presence, (channel, client) pairs; part 0 replaces.
    ChannelSnapshot {
        node: String,
        part: usize,
        members: Vec<(String, String)>,
    },
    /// `node` asks `target` (everyone when `None`) for a snapshot.
    Hello {
        node: String,
        target: Option<String>,
    },
    /// Part of `node`'s client list; part 0 replaces what others knew.
    Snapshot {
        node: String,
        part: usize,
        clients: Vec<(String, i64)>,
    },
    /// `node` is leaving the cluster.
    Bye { node: String },
}

impl Presence {
    pub(crate) fn node(&self) -> &str {
        match self {
            Presence::Join { node, .. }
            | Presence::Leave { node, .. }
            | Presence::Alive { node, .. }
            | Presence::Hello { node, .. }
            | Presence::Snapshot { node, .. }
            | Presence::ChannelJoin { node, .. }
            | Presence::ChannelLeave { node, .. }
            | Presence::ChannelSnapshot { node, .. }
            | Presence::Bye { node } => node,
        }
    }

    pub(crate) fn encode(&self) -> bytes::Bytes {
        // Strings and numbers only: serialization cannot fail.
        serde_json::to_vec(self).unwrap_or_default().into()
    }
}

/// Presence announcements waiting to be published, in order, by one task (so `register`
/// never waits for the bus).
const QUEUE: usize = 8192;

/// Queues this node's presence messages. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Announcer {
    node_id: Arc<str>,
    tx: mpsc::Sender<Presence>,
}

impl Announcer {
    /// An announcer for `node_id`, and the queue its messages are published from.
    pub(crate) fn new(node_id: Arc<str>) -> (Announcer, mpsc::Receiver<Presence>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Announcer { node_id, tx }, rx)
    }

    pub(crate) fn announce(&self, message: Presence) {
        if self.tx.try_send(message).is_err() {
            // Heartbeats carry counts; a node that sees a mismatch asks for a snapshot.
            tracing::debug!("presence queue full: peers will resync from the next heartbeat");
        }
    }

    pub(crate) fn join(&self, client: &str, since: i64) {
        self.announce(Presence::Join {
            node: self.node_id.to_string(),
            client: client.to_owned(),
            since,
        });
    }

    pub(crate) fn leave(&self, client: &str) {
        self.announce(Presence::Leave {
            node: self.node_id.to_string(),
            client: client.to_owned(),
        });
    }

    /// Asks `target` (every node when `None`) for its clients.
    pub(crate) fn hello(&self, target: Option<String>) {
        self.announce(Presence::Hello {
            node: self.node_id.to_string(),
            target,
        });
    }

    /// `client` joined (or left) presence channel `channel` here.
    pub(crate) fn channel(&self, joined: bool, channel: &str, client: &str) {
        let (node, channel, client) = (
            self.node_id.to_string(),
            channel.to_owned(),
            client.to_owned(),
        );
        self.announce(match joined {
            true => Presence::ChannelJoin {
                node,
                channel,
                client,
            },
            false => Presence::ChannelLeave {
                node,
                channel,
                client,
            },
        });
    }

    /// This node's channel presence, in parts of at most [`SNAPSHOT_PART`] pairs.
    pub(crate) fn channel_snapshot(&self, members: Vec<(String, String)>) {
        let node = self.node_id.to_string();
        let mut parts: Vec<&[(String, String)]> = members.chunks(SNAPSHOT_PART).collect();
        if parts.is_empty() {
            parts.push(&[]);
        }
        for (part, chunk) in parts.into_iter().enumerate() {
            self.announce(Presence::ChannelSnapshot {
                node: node.clone(),
                part,
                members: chunk.to_vec(),
            });
        }
    }

    /// This node's clients, in parts of at most [`SNAPSHOT_PART`].
    pub(crate) fn snapshot(&self, clients: Vec<(String, i64)>) {
        let node = self.node_id.to_string();
        if clients.is_empty() {
            self.announce(Presence::Snapshot {
                node,
                part: 0,
                clients,
            });
            return;
        }
        for (part, chunk) in clients.chunks(SNAPSHOT_PART).enumerate() {
            self.announce(Presence::Snapshot {
                node: node.clone(),
                part,
                clients: chunk.to_vec(),
            });
        }
    }
}
