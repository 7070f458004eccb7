//! The acks of one partition, sent in batches: every ack queued while the previous call was in
//! flight goes in the next `courier_broker.AckBatchService/AckMany` call. Danube's `Ack`
//! carries one message id, so acking each message cost a whole HTTP/2 request and answer on
//! both sides; now a consumer acking N messages per round trip makes one call for them. A lone
//! ack is sent at once (no timer: batches form only under load).
//!
//! The calls are made by a task of the consumer ([`OwnedTasks`](super::tasks::OwnedTasks)),
//! started by the first ack queued while none runs, and ending once the queue is empty: an idle
//! consumer runs no ack task, and `close()` stops it like the others.
//!
//! A broker that does not serve `AckMany` (Danube's own: `Unimplemented`; an older Courier
//! broker with auth on: `PermissionDenied` while `Ack` is allowed) gets Danube's `Ack` per
//! message from then on, until the partition subscribes again (perhaps on another node). A
//! batch that fails otherwise is retried message by message with `Ack`, so each caller gets
//! the answer for its own message.

use std::sync::Arc;

use courier_impls::grpc::proto::danube::MsgId;
use futures::future::join_all;
use tokio::sync::oneshot;
use tonic::Code;

use super::ack_queue::PendingAck;
use super::error::BrokerError;
use super::partition_consumer::PartitionConsumer;

/// Acks `msg_id` on `partition`: queued for the partition's ack task (started if none runs),
/// which sends it with the others queued meanwhile; returns once the broker has it.
pub(crate) async fn ack(
    partition: &Arc<PartitionConsumer>,
    msg_id: &MsgId,
) -> Result<(), BrokerError> {
    if partition.cancel_token().is_cancelled() {
        return Err(BrokerError::Closed);
    }
    let (done, answer) = oneshot::channel();
    let pending = PendingAck {
        msg_id: msg_id.clone(),
        done,
    };
    if partition.acks().push(pending) {
        // Not started (the consumer is gone or closed): dropping the task answers `Closed`.
        let task = run(partition.clone());
        if let Some(tasks) = partition.tasks() {
            tasks.spawn(task);
        }
    }
    answer.await.unwrap_or(Err(BrokerError::Closed))
}

/// Answers the queue's acks with `Closed` if the task ends any other way than with an empty
/// queue (dropped unstarted, aborted by `close()`).
struct Abandon(Option<Arc<PartitionConsumer>>);

impl Abandon {
    /// The queue was emptied: nothing to answer.
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if let Some(partition) = self.0.take() {
            partition.acks().abandon();
        }
    }
}

/// The ack task: sends `partition`'s queued acks, batch after batch, until the queue is empty.
fn run(partition: Arc<PartitionConsumer>) -> impl Future<Output = ()> + Send {
    let mut abandon = Abandon(Some(partition.clone()));
    async move {
        loop {
            let batch = partition.acks().next_batch();
            if batch.is_empty() {
                abandon.disarm();
                return;
            }
            if !send(&partition, batch).await {
                return;
            }
        }
    }
}

/// Sends one batch and answers its acks; false once the consumer is closed.
async fn send(partition: &PartitionConsumer, batch: Vec<PendingAck>) -> bool {
    let queue = partition.acks();
    if queue.batched() {
        let offsets: Vec<u64> = batch.iter().map(|ack| ack.msg_id.topic_offset).collect();
        match partition.ack_many(&offsets).await {
            Ok(()) => {
                for ack in batch {
                    let _ = ack.done.send(Ok(()));
                }
                return true;
            }
            Err(BrokerError::Closed) => {
                for ack in batch {
                    let _ = ack.done.send(Err(BrokerError::Closed));
                }
                return false;
            }
            Err(error) => match error.code() {
                Some(Code::Unimplemented) => {
                    tracing::debug!(topic = %partition.topic, "the broker has no AckMany: acking with Ack per message");
                    queue.unbatch();
                }
                // A Courier broker older than AckMany with auth on refuses the unknown call
                // (its guard asks an admin role for it): if the same acks then go through as
                // Danube's `Ack`, the call was refused, not the acks, so stop making it.
                Some(Code::PermissionDenied | Code::Unauthenticated) => {
                    if ack_each(partition, batch).await {
                        tracing::debug!(topic = %partition.topic, "AckMany refused where Ack is not: acking with Ack per message");
                        queue.unbatch();
                    }
                    return true;
                }
                _ => {}
            },
        }
    }
    ack_each(partition, batch).await;
    true
}

/// Acks each of `batch` with Danube's `Ack` and answers it; true if any was acked.
async fn ack_each(partition: &PartitionConsumer, batch: Vec<PendingAck>) -> bool {
    let acked = join_all(batch.into_iter().map(|ack| async move {
        let answer = partition.ack_one(&ack.msg_id).await;
        let ok = answer.is_ok();
        let _ = ack.done.send(answer);
        ok
    }))
    .await;
    acked.into_iter().any(|ok| ok)
}
