//! Waiting for data: wake-ups by append, close and delete, timeouts, and across instances.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use courier_traits::storage::{
    AppendRequest, Offset, StorageError, StreamName, StreamStorage, WaitOutcome,
};
use tokio::task::JoinHandle;

use super::support::*;
use crate::suites::{StorageFactory, within};

/// How long a wait gets to return wrongly (before anything happened) before the case goes on.
/// Whether a wait has subscribed to its wake-ups is not observable through the trait, so this
/// is a window, and the assertion after it is what the cases check.
const EARLY_RETURN_WINDOW: Duration = Duration::from_millis(100);

/// Starts a `wait` on its own task and asserts that it is still waiting after `window`: the
/// append, close or delete that follows then wakes a pending wait, not one that had returned.
async fn pending_wait<S: StreamStorage + 'static>(
    s: &Arc<S>,
    name: &StreamName,
    after: &Offset,
    window: Duration,
) -> JoinHandle<Result<WaitOutcome, StorageError>> {
    let (storage, stream, from) = (s.clone(), name.clone(), after.clone());
    let waiter =
        tokio::spawn(async move { storage.wait(&stream, &from, Duration::from_secs(15)).await });
    tokio::time::sleep(window).await;
    if waiter.is_finished() {
        let early = waiter.await;
        panic!("a wait on {name} after {after} returned before anything happened: {early:?}");
    }
    waiter
}

/// `wait` returns at once when data lies past the offset, and is woken by an append, by a
/// close, and by a delete.
pub async fn wait_wakeups<F: StorageFactory>(factory: &F) {
    let s = Arc::new(factory.connect().await);
    let n = name("wake");
    let start = create_tail(&s, &n).await;
    let long = Duration::from_secs(15);

    let waiter = pending_wait(&s, &n, &start, EARLY_RETURN_WINDOW).await;
    let after = append(&s, &n, AppendRequest::record("wake up")).await;
    assert_eq!(
        within("wait woken by append", waiter)
            .await
            .expect("task")
            .expect("wait"),
        WaitOutcome::Ready
    );
    assert_eq!(
        s.wait(&n, &start, long).await.expect("wait"),
        WaitOutcome::Ready,
        "data already past the offset"
    );

    let waiter = pending_wait(&s, &n, &after.next_offset, EARLY_RETURN_WINDOW).await;
    append(&s, &n, AppendRequest::close_only()).await;
    assert_eq!(
        within("wait woken by close", waiter)
            .await
            .expect("task")
            .expect("wait"),
        WaitOutcome::Closed
    );
    assert_eq!(
        s.wait(&n, &after.next_offset, long).await.expect("wait"),
        WaitOutcome::Closed,
        "closed at the tail"
    );

    let d = name("wake-delete");
    let tail = create_tail(&s, &d).await;
    let waiter = pending_wait(&s, &d, &tail, EARLY_RETURN_WINDOW).await;
    s.delete(&d).await.expect("delete");
    let result = within("wait woken by delete", waiter).await.expect("task");
    assert!(
        matches!(result, Err(StorageError::NotFound { .. })),
        "deleted while waiting: {result:?}"
    );
}

/// With nothing appended, `wait` returns `TimedOut` after its timeout.
pub async fn wait_times_out<F: StorageFactory>(factory: &F) {
    let s = factory.connect().await;
    let n = name("timeout");
    let tail = create_tail(&s, &n).await;
    let started = tokio::time::Instant::now();
    assert_eq!(
        s.wait(&n, &tail, Duration::from_millis(300))
            .await
            .expect("wait"),
        WaitOutcome::TimedOut
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "returned before its timeout"
    );
}

/// Two instances on one backend act as one: an append through one wakes a wait on the other.
pub async fn wait_across_nodes<F: StorageFactory>(factory: &F) {
    let (a, b) = (Arc::new(factory.connect().await), factory.connect().await);
    let n = name("nodes");
    let tail = create_tail(&a, &n).await;
    // Twice the window: a wake-up across instances goes through the server.
    let waiter = pending_wait(&a, &n, &tail, 2 * EARLY_RETURN_WINDOW).await;
    append(&b, &n, AppendRequest::record("from b")).await;
    assert_eq!(
        within("a wait on node a woken by node b", waiter)
            .await
            .expect("task")
            .expect("wait"),
        WaitOutcome::Ready
    );
    let (records, _) = read_all(&*a, &n, None).await;
    assert_eq!(data(&records), vec![Bytes::from_static(b"from b")]);
}
