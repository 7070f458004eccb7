//! One subscription to a cluster topic for the life of the hub: re-subscribed after failures
//! (resuming from the last position where the bus can), every message handled once.

use std::collections::{HashSet, VecDeque};

use courier_traits::bus::{
    BusError, Message, MessageId, Position, SubscribeFrom, Subscription, Topic,
};
use futures::StreamExt;
// The runtime's clock (not std's): the retry backoff follows tokio's time.
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::delivered::Delivered;
use super::envelope;
use super::membership;
use super::node::Cluster;
use super::presence::Presence;
use crate::Frame;
use crate::metrics::Metrics;

/// What a topic carries.
#[derive(Clone, Copy)]
pub(crate) enum Link {
    Broadcast,
    Inbox,
    Presence,
}

/// Consumes one topic until `stop`, re-subscribing after failures. `current` is the
/// subscription made before the hub was returned, if that worked.
pub(crate) async fn run(
    cluster: &Cluster,
    stop: &CancellationToken,
    topic: Topic,
    kind: Link,
    mut current: Option<Subscription>,
) {
    let resume = cluster.bus.capabilities().resume;
    let mut last: Option<Position> = None;
    let mut seen = RecentIds::new(4096);
    let mut delivered = Delivered::new(cluster.bus_backlog);
    let mut attempt = 0u32;
    let mut failing_since = Instant::now();
    loop {
        let mut sub = match current.take() {
            Some(sub) => sub,
            None => {
                let from = match (&last, resume) {
                    (Some(position), true) => SubscribeFrom::After(position.clone()),
                    _ => SubscribeFrom::Live,
                };
                let result = tokio::select! {
                    () = stop.cancelled() => return,
                    result = cluster.bus.subscribe(&topic, from) => result,
                };
                match result {
                    Ok(sub) => {
                        tracing::info!(topic = %topic, "cluster bus subscription restored");
                        cluster.health.ok();
                        attempt = 0;
                        sub
                    }
                    Err(BusError::PositionUnavailable { .. }) => {
                        tracing::warn!(topic = %topic, "cannot resume from the last position; going live (frames in the gap are lost)");
                        last = None;
                        continue;
                    }
                    Err(BusError::Closed) => return,
                    Err(e) => {
                        if attempt == 0 {
                            failing_since = Instant::now();
                        }
                        attempt += 1;
                        cluster.health.failed("subscribe", &e);
                        let delay = cluster.backoff(attempt, failing_since);
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep(delay) => continue,
                        }
                    }
                }
            }
        };
        loop {
            let item = tokio::select! {
                () = stop.cancelled() => return,
                item = sub.next() => item,
            };
            match item {
                Some(Ok(message)) => {
                    if message.position.is_some() {
                        last = message.position.clone();
                    }
                    if seen.insert(&message.id) {
                        handle(cluster, kind, message, &mut delivered);
                    }
                }
                Some(Err(BusError::Lagged { missed })) => {
                    Metrics::inc(&cluster.metrics.bus_errors);
                    tracing::warn!(topic = %topic, missed, "fell behind the cluster bus: frames lost for this node");
                }
                Some(Err(BusError::Closed)) => return,
                Some(Err(e)) => {
                    cluster.health.failed("subscription", &e);
                    break;
                }
                None => {
                    if stop.is_cancelled() {
                        return;
                    }
                    tracing::warn!(topic = %topic, "cluster bus subscription ended: re-subscribing");
                    break;
                }
            }
        }
    }
}

fn handle(cluster: &Cluster, kind: Link, message: Message, delivered: &mut Delivered) {
    match kind {
        Link::Broadcast | Link::Inbox => {
            let Some(env) = envelope::decode(&message.payload) else {
                tracing::warn!(topic = %message.topic, "undecodable frame on the cluster bus ignored");
                return;
            };
            if env.origin == *cluster.node_id && env.target.is_none() {
                return; // our own broadcast: local clients already have it
            }
            if let Some(id) = env.id
                && !delivered.first_delivery(&env.origin, id)
            {
                Metrics::inc(&cluster.metrics.bus_duplicates);
                tracing::debug!(
                    origin = env.origin,
                    seq = id.seq,
                    "second copy of a frame dropped"
                );
                return;
            }
            let Ok(frame) = Frame::new(env.kind, env.payload) else {
                return;
            };
            Metrics::inc(&cluster.metrics.bus_received);
            if let Some(channel) = env.channel {
                cluster.sequencer.deliver(&channel, &frame);
                return;
            }
            match env.target {
                None => {
                    cluster.registry.broadcast(&frame);
                }
                Some(client) => match cluster.registry.get(&client) {
                    Some(entry) => {
                        cluster.registry.offer(&entry, frame);
                    }
                    None => tracing::debug!(client, "unicast for a client no longer here dropped"),
                },
            }
        }
        Link::Presence => {
            let Ok(presence) = serde_json::from_slice::<Presence>(&message.payload) else {
                tracing::warn!("undecodable presence message ignored");
                return;
            };
            membership::on_presence(cluster, presence);
        }
    }
}

/// Ids of recently seen bus messages, to drop redeliveries after a resume (also of frames
/// from nodes of the version before envelope ids).
struct RecentIds {
    order: VecDeque<MessageId>,
    set: HashSet<MessageId>,
    capacity: usize,
}

impl RecentIds {
    fn new(capacity: usize) -> RecentIds {
        RecentIds {
            order: VecDeque::with_capacity(capacity),
            set: HashSet::with_capacity(capacity),
            capacity,
        }
    }

    /// True when `id` was not seen recently.
    fn insert(&mut self, id: &MessageId) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.order.push_back(id.clone());
        self.set.insert(id.clone());
        true
    }
}
