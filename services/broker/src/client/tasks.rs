//! [`OwnedTasks`]: the background tasks of one producer or consumer (health checks, partition
//! receivers), stopped together by `close()` or by dropping their owner.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long `close()` lets tasks finish after being told to stop before aborting them
/// (spec §6: grace at most 100 ms).
pub(crate) const CLOSE_GRACE: Duration = Duration::from_millis(100);

/// Tasks owned by one producer or consumer. Each sees the owner's cancellation token;
/// dropping `OwnedTasks` cancels it and aborts every task still running.
#[derive(Debug)]
pub(crate) struct OwnedTasks {
    cancel: CancellationToken,
    tasks: Mutex<JoinSet<()>>,
    live: Arc<AtomicUsize>,
}

/// Decrements a live-task counter when its task ends, however it ends (returned, aborted,
/// panicked).
struct LiveGuard(Arc<AtomicUsize>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl OwnedTasks {
    /// Tasks counted in `live` (the client's count of running tasks).
    pub(crate) fn new(live: Arc<AtomicUsize>) -> OwnedTasks {
        OwnedTasks {
            cancel: CancellationToken::new(),
            tasks: Mutex::new(JoinSet::new()),
            live,
        }
    }

    /// The token every task of this owner watches.
    pub(crate) fn token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Spawns `task`; it is told to stop through [`token`](Self::token). Nothing is spawned
    /// once the owner is closed.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        if self.cancel.is_cancelled() {
            return;
        }
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        // Reap finished tasks so a long-lived owner's set does not grow with every
        // re-attachment.
        while tasks.try_join_next().is_some() {}
        self.live.fetch_add(1, Ordering::SeqCst);
        let guard = LiveGuard(self.live.clone());
        tasks.spawn(async move {
            let _guard = guard;
            task.await;
        });
    }

    /// Tells every task to stop, waits up to [`CLOSE_GRACE`] for them, then aborts the rest
    /// and waits for the aborts to land. Idempotent.
    pub(crate) async fn close(&self) {
        self.cancel.cancel();
        let mut tasks =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        let finished = tokio::time::timeout(CLOSE_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
    }
}

impl Drop for OwnedTasks {
    fn drop(&mut self) {
        // The JoinSet aborts its tasks when dropped; cancelling first lets the ones mid-call
        // see why.
        self.cancel.cancel();
    }
}
