//! What this node does with the presence messages of other nodes: keep the directory of who
//! holds which client, close a local connection that registered again elsewhere, and answer
//! or ask for snapshots.

// The runtime's clock (not std's): directory expiry follows tokio's time.
use tokio::time::Instant;

use super::node::Cluster;
use super::presence::Presence;
use crate::client::CloseReason;
use crate::locks::lock;

pub(crate) fn on_presence(cluster: &Cluster, presence: Presence) {
    if presence.node() == &*cluster.node_id {
        return;
    }
    let now = Instant::now();
    let mut directory = lock(&cluster.directory);
    match presence {
        Presence::Join {
            node,
            client,
            since,
        } => {
            directory.join(&node, &client, since, now);
            drop(directory);
            // The same id registered elsewhere later than here: this connection is the old one.
            if let Some(entry) = cluster.registry.get(&client)
                && (entry.since_ms, &*cluster.node_id) < (since, node.as_str())
            {
                tracing::info!(
                    client,
                    node,
                    "client registered again on another node: closing it here"
                );
                entry.disconnect(CloseReason::Replaced);
            }
        }
        Presence::Leave { node, client } => directory.leave(&node, &client),
        Presence::Alive { node, clients } => {
            if directory.needs_snapshot(&node, clients, now, cluster.heartbeat) {
                drop(directory);
                cluster.announcer.hello(Some(node));
            }
        }
        Presence::Hello { node, target } => {
            directory.seen(&node, now);
            drop(directory);
            if target.is_none() || target.as_deref() == Some(&*cluster.node_id) {
                cluster.announcer.snapshot(cluster.registry.snapshot());
            }
        }
        Presence::Snapshot {
            node,
            part,
            clients,
        } => {
            directory.snapshot(&node, part == 0, &clients, now);
        }
        Presence::Bye { node } => directory.forget(&node),
    }
}
