//! At-most-once delivery over Redis pub/sub, for callers who prefer speed to durability.
//!
//! Nothing is stored: a subscriber that is disconnected (or a server that restarts) misses
//! what was published meanwhile, and that loss is not counted. Buffer overflow on the
//! subscriber's side is still counted and reported as `Lagged`.

use std::time::Duration;

use bytes::Bytes;
use courier_traits::bus::{BusError, Message, Subscription, Topic};
use futures::StreamExt;
use redis;
use tokio_util::sync::CancellationToken;

use super::errors::bus_error;
use crate::frame;
use crate::outbox::Outbox;

/// Subscribes to `channel` (confirmed by the server before this returns) and starts the
/// task that forwards its messages.
pub(super) async fn subscribe(
    client: redis::Client,
    channel: String,
    topic: Topic,
    buffer: usize,
    stop: CancellationToken,
) -> Result<Subscription, BusError> {
    let pubsub = open(&client, &channel).await?;
    let (outbox, subscription) = Outbox::new(buffer);
    tokio::spawn(forward(client, channel, topic, pubsub, outbox, stop));
    Ok(subscription)
}

async fn open(client: &redis::Client, channel: &str) -> Result<redis::aio::PubSub, BusError> {
    let mut pubsub = client
        .get_async_pubsub()
        .await
        .map_err(|e| bus_error("pubsub connect", e))?;
    pubsub
        .subscribe(channel)
        .await
        .map_err(|e| bus_error("subscribe", e))?;
    Ok(pubsub)
}

async fn forward(
    client: redis::Client,
    channel: String,
    topic: Topic,
    pubsub: redis::aio::PubSub,
    mut outbox: Outbox,
    stop: CancellationToken,
) {
    let mut messages = pubsub.into_on_message();
    loop {
        let tx = outbox.sender();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tx.closed() => return,
            permit = tx.reserve(), if outbox.pending_loss() > 0 => match permit {
                Ok(permit) => outbox.report_loss(permit),
                Err(_) => return,
            },
            message = messages.next() => match message {
                Some(message) => {
                    let Some((id, payload)) = frame::decode(message.get_payload_bytes()) else {
                        tracing::warn!(%topic, "skipping a pub/sub message that is not a Courier frame");
                        continue;
                    };
                    outbox.deliver(Message { id, topic: topic.clone(), payload: Bytes::copy_from_slice(payload), position: None });
                }
                None => {
                    // The connection is gone: subscribe again (what was published meanwhile is lost).
                    let mut backoff = Duration::from_millis(100);
                    messages = loop {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tx.closed() => return,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        if let Ok(pubsub) = open(&client, &channel).await {
                            break pubsub.into_on_message();
                        }
                    };
                }
            },
        }
    }
}
