//! Waiting for data: wake-ups by append, close and delete, timeouts, and across instances.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use courier_traits::storage::{AppendRequest, StorageError, StreamStorage, WaitOutcome};

use super::support::*;
use crate::suites::{StorageFactory, within};

/// `wait` returns at once when data lies past the offset, and is woken by an append, by a
/// close, and by a delete.
pub async fn wait_wakeups<F: StorageFactory>(factory: &F) {
    let s = Arc::new(factory.connect().await);
    let n = name("wake");
    let start = create_tail(&s, &n).await;
    let long = Duration::from_secs(15);

    let waiter = spawn_wait(&s, &n, &start, long);
    tokio::time::sleep(Duration::from_millis(100)).await;
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

    let waiter = spawn_wait(&s, &n, &after.next_offset, long);
    tokio::time::sleep(Duration::from_millis(100)).await;
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
    let waiter = spawn_wait(&s, &d, &tail, long);
    tokio::time::sleep(Duration::from_millis(100)).await;
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
    let waiter = spawn_wait(&a, &n, &tail, Duration::from_secs(15));
    tokio::time::sleep(Duration::from_millis(200)).await;
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
