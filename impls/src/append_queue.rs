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
//! stream at a time); it stops once every handle is gone and the batches in flight have
//! finished. By default any number of streams commit at once, each batch on its own. A storage
//! whose commits cost round trips per stream rather than per record (Postgres: a transaction
//! per batch) can instead have the batches of several streams committed together
//! ([`CommitBatch::shared_commits`]): at most that many commits are in flight, and the streams
//! that became ready meanwhile go together into the next one, as appends to one stream do.
//!
//! A caller that stops waiting does not stop its append: the batch commits or fails as a
//! whole and only the caller's answer is dropped.

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
/// Most record bytes in one batch (a batch holds at least one append whatever its size). A
/// shared commit is closed once its batches reach this many bytes (so it may hold up to about
/// twice as many).
const MAX_BATCH_BYTES: usize = 8 << 20;
/// Most streams in one shared commit.
const MAX_STREAMS_PER_COMMIT: usize = 128;

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

    /// `Some(n)`: the batches of several streams are committed together by
    /// [`commit_streams`](Self::commit_streams), at most `n` such commits in flight. `None`
    /// (the default): each stream's batch is committed by [`commit`](Self::commit) as soon
    /// as it is ready.
    fn shared_commits(&self) -> Option<usize> {
        None
    }

    /// Decides and writes the batches of several streams (distinct names) together, storing
    /// each append's outcome in it; a refusal of one stream (missing, gone) is that stream's
    /// appends' outcome. `Err` fails every append of every batch (nothing may have been
    /// written). The default commits each stream's batch on its own.
    async fn commit_streams(&self, batches: &mut [StreamBatch]) -> Result<(), StorageError> {
        for batch in batches.iter_mut() {
            if let Err(error) = self.commit(&batch.name, &mut batch.appends).await {
                for append in &mut batch.appends {
                    append.result = Some(Err(copy_error(&error)));
                }
            }
        }
        Ok(())
    }
}

/// One stream's batch in a shared commit.
pub(crate) struct StreamBatch {
    /// The stream.
    pub(crate) name: StreamName,
    /// Its appends, in queue order.
    pub(crate) appends: Vec<PendingAppend>,
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

/// The streams with a batch in flight, the appends waiting for each one's next batch, and the
/// streams whose next batch may go (appends waiting, none in flight), in the order they
/// became so.
#[derive(Default)]
struct Streams {
    busy: HashSet<StreamName>,
    waiting: HashMap<StreamName, VecDeque<Job>>,
    ready: VecDeque<StreamName>,
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

    /// Queues `job`; its stream becomes ready if it had nothing waiting and nothing in flight.
    fn arrived(&mut self, job: Job) {
        let name = job.name.clone();
        let queue = self.waiting.entry(name.clone()).or_default();
        let first = queue.is_empty();
        queue.push_back(job);
        if first && !self.busy.contains(&name) {
            self.ready.push_back(name);
        }
    }

    /// `name`'s batch is done; the stream is ready again if appends waited meanwhile.
    fn finished(&mut self, name: StreamName) {
        self.busy.remove(&name);
        if self.waiting.contains_key(&name) {
            self.ready.push_back(name);
        }
    }

    /// The next commit's batches: the first ready stream's, and with `shared`, those of the
    /// streams ready after it, within the per-commit bounds.
    fn next_commit(&mut self, shared: bool) -> Vec<(StreamName, Vec<Job>)> {
        let mut commit = Vec::new();
        let mut bytes = 0;
        while let Some(name) = self.ready.pop_front() {
            if let Some(batch) = self.next_batch(&name) {
                bytes += batch
                    .iter()
                    .flat_map(|job| &job.request.records)
                    .map(|r| r.len())
                    .sum::<usize>();
                commit.push((name, batch));
            }
            let full = commit.len() == MAX_STREAMS_PER_COMMIT || bytes >= MAX_BATCH_BYTES;
            if !commit.is_empty() && (!shared || full) {
                break;
            }
        }
        commit
    }
}

async fn run(committer: Arc<dyn CommitBatch>, mut queue: mpsc::Receiver<Job>) {
    let shared = committer.shared_commits().map(|n| n.max(1));
    let mut streams = Streams::default();
    let mut in_flight: FuturesUnordered<BoxFuture<'static, Vec<StreamName>>> =
        FuturesUnordered::new();
    let mut received = Vec::with_capacity(MAX_BATCH);
    let mut open = true;
    loop {
        tokio::select! {
            n = queue.recv_many(&mut received, MAX_BATCH), if open => {
                if n == 0 {
                    open = false;
                    continue;
                }
                for job in received.drain(..) {
                    streams.arrived(job);
                }
            }
            Some(names) = in_flight.next(), if !in_flight.is_empty() => {
                for name in names {
                    streams.finished(name);
                }
            }
            else => break,
        }
        while shared.is_none_or(|most| in_flight.len() < most) {
            let next = streams.next_commit(shared.is_some());
            if next.is_empty() {
                break;
            }
            in_flight.push(Box::pin(commit(committer.clone(), next)));
        }
    }
}

/// Commits the batches of one commit and answers each of their callers; returns the streams'
/// names.
async fn commit(
    committer: Arc<dyn CommitBatch>,
    streams: Vec<(StreamName, Vec<Job>)>,
) -> Vec<StreamName> {
    let mut replies = Vec::with_capacity(streams.len());
    let mut batches: Vec<StreamBatch> = streams
        .into_iter()
        .map(|(name, jobs)| {
            let mut answers = Vec::with_capacity(jobs.len());
            let appends = jobs
                .into_iter()
                .map(|job| {
                    answers.push(job.reply);
                    PendingAppend {
                        request: job.request,
                        result: None,
                    }
                })
                .collect();
            replies.push(answers);
            StreamBatch { name, appends }
        })
        .collect();
    let committed = match &mut batches[..] {
        [one] => committer.commit(&one.name, &mut one.appends).await,
        several => committer.commit_streams(several).await,
    };
    let mut names = Vec::with_capacity(batches.len());
    for (batch, answers) in batches.into_iter().zip(replies) {
        for (append, reply) in batch.appends.into_iter().zip(answers) {
            let outcome = match &committed {
                // Outcomes decided before the failure may rest on the batch's earlier appends,
                // which were not written: every append of the commit shares the failure.
                Err(e) => Err(copy_error(e)),
                Ok(()) => append.result.unwrap_or_else(|| {
                    Err(StorageError::Backend {
                        message: format!("append to {} was not decided", batch.name),
                        source: None,
                    })
                }),
            };
            let _ = reply.send(outcome);
        }
        names.push(batch.name);
    }
    names
}

/// The same failure for another append of the batch (errors own their source, so copies keep
/// the message and the class).
pub(crate) fn copy_error(error: &StorageError) -> StorageError {
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
