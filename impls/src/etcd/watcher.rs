//! One subscription: a task that watches a topic's key and forwards its puts.
//!
//! The task owns the watch and the sending half of a bounded channel; the subscription owns
//! the receiving half. It stops when the subscription is dropped or the bus closes. A broken
//! watch (server restart, network) is re-opened from the revision after the last one
//! delivered, so nothing is skipped and nothing is delivered twice. A compacted revision ends
//! the subscription with [`BusError::PositionUnavailable`]: never a silent gap.

use std::time::Duration;

use bytes::Bytes;
use courier_traits::bus::{BusError, Message, Position, Subscription, Topic};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;

use super::client::EtcdClient;
use super::errors::{bus_error, stream_ended};
use super::proto::etcdserverpb::watch_request::RequestUnion;
use super::proto::etcdserverpb::{RangeRequest, WatchCreateRequest, WatchRequest, WatchResponse};
use super::proto::mvccpb::event::EventType;
use crate::frame;
use crate::outbox::Outbox;

/// Positions are revisions.
pub(super) use crate::sequence_position::position;

pub(super) fn parse_position(position: &Position) -> Result<i64, BusError> {
    crate::sequence_position::number(position, "an etcd revision")
}

/// Opens a watch on `key` from `start` (inclusive; `None` = from now) and waits until etcd
/// has created it, so any put after this returns is seen. Returns the watch and the first
/// revision it will deliver.
async fn open(
    client: &EtcdClient,
    key: &[u8],
    start: Option<i64>,
) -> Result<(Streaming<WatchResponse>, i64), BusError> {
    if let Some(revision) = start {
        check_not_compacted(client, key, revision).await?;
    }
    let create = WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: key.to_vec(),
            start_revision: start.unwrap_or(0), // 0: from the next revision
            ..WatchCreateRequest::default()
        })),
    };
    // The request side stays open as long as the watch: it ends when the response stream is
    // dropped (the subscription's task stops), never before.
    let requests = futures::stream::iter([create]).chain(futures::stream::pending());
    let mut stream = client
        .watch()
        .watch(requests)
        .await
        .map_err(|e| bus_error("watch", e))?
        .into_inner();
    let created = stream
        .message()
        .await
        .map_err(|e| bus_error("watch", e))?
        .ok_or_else(|| stream_ended("watch"))?;
    check_cancelled(&created, start)?;
    let next = start.unwrap_or_else(|| created.header.map(|h| h.revision).unwrap_or(0) + 1);
    Ok((stream, next))
}

/// etcd confirms a watch on a compacted revision as created and cancels it only afterwards,
/// so ask first: a read at `revision` fails with "compacted" if history before it is gone.
async fn check_not_compacted(
    client: &EtcdClient,
    key: &[u8],
    revision: i64,
) -> Result<(), BusError> {
    let request = RangeRequest {
        key: key.to_vec(),
        revision,
        count_only: true,
        ..RangeRequest::default()
    };
    match client.kv().range(request).await {
        Ok(_) => Ok(()),
        Err(status) if status.message().contains("compacted") => {
            Err(BusError::PositionUnavailable {
                position: position(revision - 1),
                reason: format!(
                    "etcd history before this position was compacted ({})",
                    status.message()
                ),
            })
        }
        // A revision in the future is fine: the watch waits for it.
        Err(status) if status.message().contains("future revision") => Ok(()),
        Err(e) => Err(bus_error("get", e)),
    }
}

fn check_cancelled(response: &WatchResponse, start: Option<i64>) -> Result<(), BusError> {
    if !response.canceled {
        return Ok(());
    }
    if response.compact_revision > 0 {
        return Err(BusError::PositionUnavailable {
            position: position(start.unwrap_or_default().saturating_sub(1)),
            reason: format!(
                "etcd compacted history up to revision {}",
                response.compact_revision
            ),
        });
    }
    Err(BusError::Backend {
        message: format!("etcd cancelled the watch: {}", response.cancel_reason),
        source: None,
    })
}

/// Starts a subscription on `topic` (key `key`) from `start`.
pub(super) async fn subscribe(
    client: EtcdClient,
    key: Vec<u8>,
    topic: Topic,
    start: Option<i64>,
    buffer: usize,
    stop: CancellationToken,
) -> Result<Subscription, BusError> {
    let (watch, next) = open(&client, &key, start).await?;
    let (outbox, subscription) = Outbox::new(buffer);
    let forwarder = Forwarder {
        client,
        key,
        topic,
        next,
        outbox,
    };
    tokio::spawn(forwarder.run(watch, stop));
    Ok(subscription)
}

struct Forwarder {
    client: EtcdClient,
    key: Vec<u8>,
    topic: Topic,
    /// The first revision not yet delivered (or dropped as lag).
    next: i64,
    outbox: Outbox,
}

enum Step {
    Continue,
    Reconnect,
    Stop,
}

impl Forwarder {
    async fn run(mut self, mut watch: Streaming<WatchResponse>, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            // A clone, so waiting on it does not borrow `self` (another branch needs it mutably).
            let tx = self.outbox.sender();
            let step = tokio::select! {
                _ = stop.cancelled() => Step::Stop,
                _ = tx.closed() => Step::Stop,
                // Report losses as soon as there is room, not only with the next message.
                permit = tx.reserve(), if self.outbox.pending_loss() > 0 => match permit {
                    Ok(permit) => {
                        self.outbox.report_loss(permit);
                        Step::Continue
                    }
                    Err(_) => Step::Stop,
                },
                message = watch.message() => match message {
                    Ok(Some(response)) => self.forward(response),
                    Ok(None) | Err(_) => Step::Reconnect,
                },
            };
            match step {
                Step::Continue => backoff = Duration::from_millis(100),
                Step::Stop => return,
                Step::Reconnect => loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tx.closed() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    match open(&self.client, &self.key, Some(self.next)).await {
                        Ok((reopened, _)) => {
                            watch = reopened;
                            break;
                        }
                        Err(e @ BusError::PositionUnavailable { .. }) => {
                            self.outbox.fail(e).await;
                            return;
                        }
                        Err(error) => {
                            tracing::debug!(%error, topic = %self.topic, "etcd watch reconnect failed; retrying")
                        }
                    }
                },
            }
        }
    }

    /// Forwards the puts of one watch response; drops (and counts) what does not fit.
    fn forward(&mut self, response: WatchResponse) -> Step {
        if let Err(error) = check_cancelled(&response, Some(self.next)) {
            let is_compaction = matches!(error, BusError::PositionUnavailable { .. });
            let _ = self.outbox.sender().try_send(Err(error)); // not `deliver`: an error is never dropped as lag
            return if is_compaction {
                Step::Stop
            } else {
                Step::Reconnect
            };
        }
        for event in &response.events {
            let Some(kv) = &event.kv else { continue };
            if kv.mod_revision < self.next {
                continue; // already delivered before a reconnect
            }
            self.next = kv.mod_revision + 1;
            if event.r#type() != EventType::Put {
                continue; // lease expiry deletes the key; that is not a message
            }
            let Some((id, payload)) = frame::decode(&kv.value) else {
                tracing::warn!(topic = %self.topic, revision = kv.mod_revision, "skipping a value that is not a Courier frame");
                continue;
            };
            let message = Message {
                id,
                topic: self.topic.clone(),
                payload: Bytes::copy_from_slice(payload),
                position: Some(position(kv.mod_revision)),
            };
            self.outbox.deliver(message);
        }
        Step::Continue
    }
}
