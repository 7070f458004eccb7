//! Group commit for the shared storages (Redis, Postgres): concurrent appends to one stream on
//! one node are queued and committed together, as one batch, while that stream's previous
//! batch is in flight.
//!
//! Committed one at a time, appends to one stream wait for each other's round trips and each
//! pays its own fsync on the server; batched, one script call or one transaction (one fsync)
//! carries every append that queued meanwhile. The storage decides the batch's appends in
//! queue order with the shared rules ([`AppendBatch`](crate::rules::AppendBatch)), so the
//! outcomes are those of the same appends made one by one in that order.
//!
//! One task per storage instance owns the queue and drives the batches in flight (one per
//! stream at a time, any number of streams at once); it stops once every handle is gone and
//! the batches in flight have finished. A caller that stops waiting does not stop its append:
//! the batch commits or fails as a whole and only the caller's answer is dropped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use courier_traits::storage::{AppendOutcome, AppendRequest, StorageError, StreamName};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};

/// Most appends in one batch.
const MAX_BATCH: usize = 256;
/// Most record bytes in one batch (a batch holds at least one append whatever its size).
const MAX_BATCH_BYTES: usize = 8 << 20;

/// One queued append and, once decided, its result.
pub(crate) struct PendingAppend {
    /// The request, validated.
    pub(crate) request: AppendRequest,
    /// Its outcome, set by the commit.
    pub(crate) result: Option<Result<AppendOutcome, StorageError>>,
}

/// How a storage commits one batch of appends to one stream.
#[async_trait]
pub(crate) trait CommitBatch: Send + Sync + 'static {
    /// Decides `batch` (appends to `stream`, in queue order) and writes what was accepted,
    /// storing each append's outcome in it. `Err` fails every append of the batch (nothing of
    /// it may have been written): a stream gone missing, a failed write.
    async fn commit(
        &self,
        stream: &StreamName,
        batch: &mut [PendingAppend],
    ) -> Result<(), StorageError>;
}

struct Job {
    name: StreamName,
    request: AppendRequest,
    reply: oneshot::Sender<Result<AppendOutcome, StorageError>>,
}

/// The handle to a storage's append queue; its task ends when every handle is gone.
#[derive(Clone)]
pub(crate) struct AppendQueue {
    jobs: mpsc::Sender<Job>,
}

fn queue_gone() -> StorageError {
    StorageError::Unavailable {
        message: "append queue stopped".into(),
        source: None,
    }
}

impl AppendQueue {
    /// Starts the queue's task, committing batches through `committer`.
    pub(crate) fn start(committer: Arc<dyn CommitBatch>) -> AppendQueue {
        let (jobs, queue) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(committer, queue));
        AppendQueue { jobs }
    }

    /// Appends `request` (already validated) to `name` in the stream's next batch; answers
    /// once that batch has committed.
    pub(crate) async fn append(
        &self,
        name: &StreamName,
        request: AppendRequest,
    ) -> Result<AppendOutcome, StorageError> {
        let (reply, outcome) = oneshot::channel();
        self.jobs
            .send(Job {
                name: name.clone(),
                request,
                reply,
            })
            .await
            .map_err(|_| queue_gone())?;
        outcome.await.map_err(|_| queue_gone())?
    }
}

/// The streams with a batch in flight, and the appends waiting for each one's next batch.
#[derive(Default)]
struct Streams {
    busy: HashSet<StreamName>,
    waiting: HashMap<StreamName, VecDeque<Job>>,
}

impl Streams {
    /// Takes the next batch of `name` if it has waiting appends and no batch in flight.
    fn next_batch(&mut self, name: &StreamName) -> Option<Vec<Job>> {
        if self.busy.contains(name) {
            return None;
        }
        let queue = self.waiting.get_mut(name)?;
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(job) = queue.front() {
            let size: usize = job.request.records.iter().map(|r| r.len()).sum();
            if !batch.is_empty() && (batch.len() == MAX_BATCH || bytes + size > MAX_BATCH_BYTES) {
                break;
            }
            bytes += size;
            batch.extend(queue.pop_front());
        }
        if queue.is_empty() {
            self.waiting.remove(name);
        }
        if batch.is_empty() {
            return None;
        }
        self.busy.insert(name.clone());
        Some(batch)
    }
}

async fn run(committer: Arc<dyn CommitBatch>, mut queue: mpsc::Receiver<Job>) {
    let mut streams = Streams::default();
    let mut in_flight: FuturesUnordered<BoxFuture<'static, StreamName>> = FuturesUnordered::new();
    let mut received = Vec::with_capacity(MAX_BATCH);
    let mut open = true;
    loop {
        tokio::select! {
            n = queue.recv_many(&mut received, MAX_BATCH), if open => {
                if n == 0 {
                    open = false;
                    continue;
                }
                let mut arrived: Vec<StreamName> = Vec::new();
                for job in received.drain(..) {
                    if !streams.waiting.contains_key(&job.name) {
                        arrived.push(job.name.clone());
                    }
                    streams.waiting.entry(job.name.clone()).or_default().push_back(job);
                }
                for name in arrived {
                    if let Some(batch) = streams.next_batch(&name) {
                        in_flight.push(Box::pin(commit(committer.clone(), name, batch)));
                    }
                }
            }
            Some(name) = in_flight.next(), if !in_flight.is_empty() => {
                streams.busy.remove(&name);
                if let Some(batch) = streams.next_batch(&name) {
                    in_flight.push(Box::pin(commit(committer.clone(), name, batch)));
                }
            }
            else => break,
        }
    }
}

/// Commits one batch and answers each of its callers; returns the stream's name.
async fn commit(committer: Arc<dyn CommitBatch>, name: StreamName, jobs: Vec<Job>) -> StreamName {
    let mut replies = Vec::with_capacity(jobs.len());
    let mut batch: Vec<PendingAppend> = jobs
        .into_iter()
        .map(|job| {
            replies.push(job.reply);
            PendingAppend {
                request: job.request,
                result: None,
            }
        })
        .collect();
    let committed = committer.commit(&name, &mut batch).await;
    for (append, reply) in batch.into_iter().zip(replies) {
        let outcome = match &committed {
            // Outcomes decided before the failure may rest on the batch's earlier appends,
            // which were not written: every append of the batch shares the failure.
            Err(e) => Err(copy_error(e)),
            Ok(()) => append.result.unwrap_or_else(|| {
                Err(StorageError::Backend {
                    message: format!("append to {name} was not decided"),
                    source: None,
                })
            }),
        };
        let _ = reply.send(outcome);
    }
    name
}

/// The same failure for another append of the batch (errors own their source, so copies keep
/// the message and the class).
fn copy_error(error: &StorageError) -> StorageError {
    match error {
        StorageError::NotFound { stream } => StorageError::NotFound {
            stream: stream.clone(),
        },
        StorageError::Gone { stream } => StorageError::Gone {
            stream: stream.clone(),
        },
        StorageError::Unavailable { message, .. } => StorageError::Unavailable {
            message: message.clone(),
            source: None,
        },
        StorageError::Backend { message, .. } => StorageError::Backend {
            message: message.clone(),
            source: None,
        },
        other => StorageError::Backend {
            message: other.to_string(),
            source: None,
        },
    }
}

/// Implements `StreamStorage` for a storage handle `$handle` with fields `store` (an `Arc` of
/// the backend's state, with inherent methods of the trait's names and a `config` holding
/// `max_record_bytes`) and `appends` (its [`AppendQueue`]): appends go through the queue,
/// everything else straight to the store.
macro_rules! stream_storage_with_append_queue {
    ($handle:ty) => {
        #[async_trait::async_trait]
        impl courier_traits::storage::StreamStorage for $handle {
            async fn create(
                &self,
                name: &courier_traits::storage::StreamName,
                config: courier_traits::storage::StreamConfig,
                initial: Vec<bytes::Bytes>,
            ) -> Result<courier_traits::storage::CreateOutcome, courier_traits::storage::StorageError>
            {
                self.store.create(name, config, initial).await
            }

            async fn append(
                &self,
                name: &courier_traits::storage::StreamName,
                request: courier_traits::storage::AppendRequest,
            ) -> Result<courier_traits::storage::AppendOutcome, courier_traits::storage::StorageError>
            {
                $crate::rules::validate_append(&request, self.store.config.max_record_bytes)?;
                self.appends.append(name, request).await
            }

            async fn append_keyed(
                &self,
                stream: &courier_traits::storage::StreamName,
                records: Vec<courier_traits::storage::KeyedRecord>,
                window: std::time::Duration,
            ) -> Result<
                Vec<courier_traits::storage::KeyedOutcome>,
                courier_traits::storage::StorageError,
            > {
                self.store.append_keyed(stream, records, window).await
            }

            async fn read(
                &self,
                name: &courier_traits::storage::StreamName,
                from: Option<courier_traits::storage::Offset>,
                limits: courier_traits::storage::ReadLimits,
            ) -> Result<courier_traits::storage::ReadBatch, courier_traits::storage::StorageError>
            {
                self.store.read(name, from, limits).await
            }

            async fn wait(
                &self,
                name: &courier_traits::storage::StreamName,
                after: &courier_traits::storage::Offset,
                timeout: std::time::Duration,
            ) -> Result<courier_traits::storage::WaitOutcome, courier_traits::storage::StorageError>
            {
                self.store.wait(name, after, timeout).await
            }

            async fn head(
                &self,
                name: &courier_traits::storage::StreamName,
            ) -> Result<courier_traits::storage::StreamInfo, courier_traits::storage::StorageError>
            {
                self.store.head(name).await
            }

            async fn delete(
                &self,
                name: &courier_traits::storage::StreamName,
            ) -> Result<(), courier_traits::storage::StorageError> {
                self.store.delete(name).await
            }

            fn capabilities(&self) -> courier_traits::storage::StorageCapabilities {
                self.store.capabilities()
            }
        }
    };
}
pub(crate) use stream_storage_with_append_queue;
