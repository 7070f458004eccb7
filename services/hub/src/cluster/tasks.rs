//! The cluster's background tasks, each owned by the hub's task tracker and stopped by its
//! stop token: one [`link`](super::link) per topic, the presence publisher, the broadcast
//! re-publisher and the heartbeat.

use std::sync::Arc;

use bytes::Bytes;
use courier_traits::bus::{BusError, SubscribeFrom};
use tokio::sync::mpsc;
// The runtime's clock (not std's): heartbeats and backoff follow tokio's timers, and tests
// can move it.
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::link::{self, Link};
use super::node::{Cluster, Queues};
use super::presence::Presence;
use crate::HubError;
use crate::locks::lock;

/// Subscribes to the cluster topics (waiting for them, so frames published after the hub is
/// built are received) and starts the cluster tasks on `tasks`, all ending at `stop`.
pub(crate) async fn start(
    cluster: &Arc<Cluster>,
    queues: Queues,
    stop: &CancellationToken,
    tasks: &TaskTracker,
) -> Result<(), HubError> {
    for (topic, kind) in [
        (cluster.topics.broadcast.clone(), Link::Broadcast),
        (cluster.topics.inbox.clone(), Link::Inbox),
        (cluster.topics.presence.clone(), Link::Presence),
    ] {
        let first = match cluster.bus.subscribe(&topic, SubscribeFrom::Live).await {
            Ok(sub) => Some(sub),
            Err(e) => {
                cluster.health.failed("subscribe", &e);
                None
            }
        };
        let (cluster, stop) = (cluster.clone(), stop.clone());
        tasks.spawn(async move { link::run(&cluster, &stop, topic, kind, first).await });
    }
    let (task_cluster, task_stop) = (cluster.clone(), stop.clone());
    tasks.spawn(async move { publish_presence(&task_cluster, &task_stop, queues.presence).await });
    let (task_cluster, task_stop) = (cluster.clone(), stop.clone());
    tasks.spawn(async move { republish(&task_cluster, &task_stop, queues.backlog).await });
    let (task_cluster, task_stop) = (cluster.clone(), stop.clone());
    tasks.spawn(async move { heartbeat(&task_cluster, &task_stop).await });
    cluster.announcer.hello(None);
    Ok(())
}

async fn publish_presence(
    cluster: &Cluster,
    stop: &CancellationToken,
    mut rx: mpsc::Receiver<Presence>,
) {
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return,
            message = rx.recv() => match message { Some(m) => m, None => return },
        };
        // Presence lost in an outage is repaired by heartbeats and snapshots: no retry here.
        let _ = cluster
            .publish(
                &cluster.topics.presence,
                message.encode(),
                "presence publish",
            )
            .await;
    }
}

/// Re-publishes broadcasts the bus refused, in order, once it answers again.
async fn republish(cluster: &Cluster, stop: &CancellationToken, mut rx: mpsc::Receiver<Bytes>) {
    loop {
        let payload = tokio::select! {
            () = stop.cancelled() => return,
            payload = rx.recv() => match payload { Some(p) => p, None => return },
        };
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            match cluster
                .publish(
                    &cluster.topics.broadcast,
                    payload.clone(),
                    "broadcast re-publish",
                )
                .await
            {
                Ok(()) => break,
                Err(BusError::Closed) => return,
                Err(_) => {
                    attempt += 1;
                    let delay = cluster.backoff(attempt, started);
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        cluster.backlog_sent();
    }
}

/// Announces this node with its client count and forgets silent nodes.
async fn heartbeat(cluster: &Cluster, stop: &CancellationToken) {
    let mut tick = tokio::time::interval(cluster.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let alive = Presence::Alive {
            node: cluster.node_id.to_string(),
            clients: cluster.registry.len(),
            channels: cluster.channel_presence_digest(),
        };
        let _ = cluster
            .publish(&cluster.topics.presence, alive.encode(), "heartbeat")
            .await;
        if !cluster.health.healthy() {
            // Other nodes are silent because we cannot hear them: keep them (pushes to their
            // clients answer "bus unavailable", a temporary failure, not "not found").
            continue;
        }
        let listening_since = cluster.health.healthy_since();
        let gone =
            lock(&cluster.directory).expire(Instant::now(), cluster.heartbeat * 3, listening_since);
        for node in gone {
            tracing::warn!(node, "no heartbeat from node: forgetting its clients");
            cluster.forget_channel_presence(&node);
        }
    }
}
