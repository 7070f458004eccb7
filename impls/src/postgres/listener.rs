//! The notification listener: one connection per storage or bus instance that turns
//! `NOTIFY`s into wake-ups of the local waiters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use super::notifier::WAKE_ALL;
use crate::wakers::Wakers;

/// Keeps the listener connection: wakes the waiters of every notified stream, and all of them
/// after a reconnect. Skips the notifications sent by `own_process` (this node's notifier,
/// whose waiters were woken at the commit). Stops when the storage (every clone) is dropped.
pub(crate) async fn listen(
    mut listener: PgListener,
    channel: &'static str,
    wakers: Arc<Wakers>,
    own_process: Arc<AtomicU32>,
    stop: CancellationToken,
) {
    let mut listening = false;
    loop {
        if !listening {
            match listener.listen(channel).await {
                Ok(()) => {
                    listening = true;
                    wakers.wake_all();
                }
                Err(error) => {
                    tracing::warn!(%error, "postgres LISTEN failed; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            received = listener.try_recv() => match received {
                Ok(Some(notification)) if notification.process_id() == own_process.load(Ordering::Relaxed) => {}
                Ok(Some(notification)) if notification.payload() == WAKE_ALL => wakers.wake_all(),
                Ok(Some(notification)) => wakers.wake(notification.payload()),
                // The connection was lost (sqlx reconnects and re-listens on the next call);
                // notifications sent meanwhile are gone, so every waiter re-checks.
                Ok(None) => wakers.wake_all(),
                Err(error) => {
                    tracing::warn!(%error, "postgres listener failed; reconnecting");
                    listening = false;
                    wakers.wake_all();
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            },
        }
    }
}
