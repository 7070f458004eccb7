//! The storage's wake-ups: one pub/sub connection per instance on the notification channel,
//! turned into wake-ups of the local waiters (appends on any node wake waits on every node).

use std::sync::Arc;
use std::time::Duration;

use courier_traits::storage::StorageError;
use futures::StreamExt;
use redis;
use tokio_util::sync::CancellationToken;

use super::errors::storage_error;
use crate::wakers::Wakers;

pub(super) async fn subscribe_notifications(
    client: &redis::Client,
    channel: &str,
) -> Result<redis::aio::PubSub, StorageError> {
    let mut pubsub = client
        .get_async_pubsub()
        .await
        .map_err(|e| storage_error("pubsub", e))?;
    pubsub
        .subscribe(channel)
        .await
        .map_err(|e| storage_error("subscribe", e))?;
    Ok(pubsub)
}

/// Wakes the waiters of every notified stream; after a reconnect, all of them (notifications
/// sent meanwhile are lost). Stops when every clone of the storage is dropped.
pub(super) async fn listen(
    client: redis::Client,
    channel: String,
    pubsub: redis::aio::PubSub,
    wakers: Arc<Wakers>,
    stop: CancellationToken,
) {
    let mut messages = pubsub.into_on_message();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            message = messages.next() => match message {
                Some(message) => {
                    if let Ok(name) = std::str::from_utf8(message.get_payload_bytes()) {
                        wakers.wake(name);
                    }
                }
                None => loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                    if let Ok(pubsub) = subscribe_notifications(&client, &channel).await {
                        messages = pubsub.into_on_message();
                        wakers.wake_all();
                        break;
                    }
                },
            },
        }
    }
}
