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
        Presence::Alive {
            node,
            clients,
            channels,
        } => {
            let clients_differ = directory.needs_snapshot(&node, clients, now, cluster.heartbeat);
            drop(directory);
            let channels_differ =
                cluster
                    .channel_presence
                    .needs_snapshot(&node, channels, now, cluster.heartbeat);
            if clients_differ || channels_differ {
                cluster.announcer.hello(Some(node));
            }
        }
        Presence::ChannelJoin {
            node,
            channel,
            client,
        } => {
            drop(directory);
            let change = cluster.channel_presence.join(&node, &channel, &client);
            cluster.deliver_presence_changes(change.into_iter().collect());
        }
        Presence::ChannelLeave {
            node,
            channel,
            client,
        } => {
            drop(directory);
            let change = cluster.channel_presence.leave(&node, &channel, &client);
            cluster.deliver_presence_changes(change.into_iter().collect());
        }
        Presence::ChannelSnapshot {
            node,
            part,
            members,
        } => {
            drop(directory);
            let changes = cluster.channel_presence.snapshot(&node, part == 0, members);
            cluster.deliver_presence_changes(changes);
        }
        Presence::Hello { node, target } => {
            directory.seen(&node, now);
            drop(directory);
            if target.is_none() || target.as_deref() == Some(&*cluster.node_id) {
                cluster.announcer.snapshot(cluster.registry.snapshot());
                cluster
                    .announcer
                    .channel_snapshot(cluster.local_channel_members());
            }
        }
        Presence::Snapshot {
            node,
            part,
            clients,
        } => {
            directory.snapshot(&node, part == 0, &clients, now);
        }
        Presence::Bye { node } => {
            directory.forget(&node);
            drop(directory);
            cluster.forget_channel_presence(&node);
        }
    }
}
