//! Presence messages on the `presence` topic: how nodes learn who holds which client.

use serde::{Deserialize, Serialize};

/// Clients per snapshot message (keeps each bus payload well under etcd's 1.5 MiB limit).
pub(crate) const SNAPSHOT_PART: usize = 2000;

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
    /// `node` is alive and holds `clients` clients.
    Alive { node: String, clients: usize },
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
            | Presence::Bye { node } => node,
        }
    }

    pub(crate) fn encode(&self) -> bytes::Bytes {
        // Strings and numbers only: serialization cannot fail.
        serde_json::to_vec(self).unwrap_or_default().into()
    }
}
