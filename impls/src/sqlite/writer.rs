//! Group commit: one task owns the write connection and commits every write queued
//! meanwhile in one transaction, so one fsync covers many appends.
//!
//! Appends are applied together per stream (`batch_append.rs`). Other jobs run inside their own
//! `SAVEPOINT`: a job that fails is rolled back alone and the others still commit. A caller
//! hears back only after the commit (or its failure), so an acknowledged append is durable.

use std::sync::Arc;

use async_trait::async_trait;
use courier_traits::clock::Clock;
use courier_traits::storage::{AppendOutcome, AppendRequest, StorageError, StreamName};
use futures::future::BoxFuture;
use sqlx::SqliteConnection;
use tokio::sync::{mpsc, oneshot};

use super::batch_append::{self, QueuedAppend};
use super::errors::db_error;
use crate::sql_model::now_ms;

/// Most jobs committed together.
const MAX_BATCH: usize = 256;

/// The work of one write, run on the writer's connection inside the batch transaction.
pub(super) trait Work<T>:
    for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StorageError>> + Send + 'static
{
}
impl<T, W> Work<T> for W where
    W: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StorageError>>
        + Send
        + 'static
{
}

#[async_trait]
trait Job: Send {
    async fn run(&mut self, conn: &mut SqliteConnection);
    fn finish(self: Box<Self>, commit: Result<(), String>);
}

struct TypedJob<T, W> {
    work: Option<W>,
    result: Option<Result<T, StorageError>>,
    reply: oneshot::Sender<Result<T, StorageError>>,
}

#[async_trait]
impl<T: Send + 'static, W: Work<T>> Job for TypedJob<T, W> {
    async fn run(&mut self, conn: &mut SqliteConnection) {
        let Some(work) = self.work.take() else { return };
        if let Err(e) = sqlx::query("SAVEPOINT job").execute(&mut *conn).await {
            self.result = Some(Err(db_error(e)));
            return;
        }
        let result = work(conn).await;
        let undo = if result.is_err() {
            "ROLLBACK TO job"
        } else {
            "RELEASE job"
        };
        let closed = sqlx::query(undo).execute(&mut *conn).await;
        if result.is_err() {
            let _ = sqlx::query("RELEASE job").execute(&mut *conn).await;
        }
        self.result = Some(match (result, closed) {
            (Ok(_), Err(e)) => Err(db_error(e)),
            (result, _) => result,
        });
    }

    fn finish(self: Box<Self>, commit: Result<(), String>) {
        let _ = self.reply.send(settle(self.result, commit));
    }
}

/// A write's answer: its own error, else its value if the batch committed.
fn settle<T>(
    result: Option<Result<T, StorageError>>,
    commit: Result<(), String>,
) -> Result<T, StorageError> {
    match (result, commit) {
        (Some(Err(e)), _) => Err(e),
        (Some(Ok(value)), Ok(())) => Ok(value),
        (_, Err(message)) => Err(StorageError::Unavailable {
            message,
            source: None,
        }),
        (None, Ok(())) => Err(StorageError::Backend {
            message: "write was not applied".into(),
            source: None,
        }),
    }
}

/// What the writer is asked to do.
enum Queued {
    /// Any write, run in its own savepoint.
    Job(Box<dyn Job>),
    /// An append, applied together with the batch's other appends.
    Append(
        QueuedAppend,
        oneshot::Sender<Result<AppendOutcome, StorageError>>,
    ),
}

impl Queued {
    fn finish(self, commit: Result<(), String>) {
        match self {
            Queued::Job(job) => job.finish(commit),
            Queued::Append(append, reply) => {
                let _ = reply.send(settle(append.result, commit));
            }
        }
    }
}

/// The handle to the writer task; the task ends when every handle is gone.
#[derive(Clone)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Queued>,
}

fn writer_gone() -> StorageError {
    StorageError::Unavailable {
        message: "sqlite writer stopped".into(),
        source: None,
    }
}

impl Writer {
    /// Starts the writer task on `conn`; appends judge expiry against `clock`.
    pub(super) fn start(conn: SqliteConnection, clock: Arc<dyn Clock>) -> Writer {
        let (jobs, queue) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(conn, queue, clock));
        Writer { jobs }
    }

    /// Runs `work` in the next batch; returns its result once the batch has committed.
    pub(super) async fn write<T: Send + 'static>(
        &self,
        work: impl Work<T>,
    ) -> Result<T, StorageError> {
        let (reply, result) = oneshot::channel();
        let job = Box::new(TypedJob {
            work: Some(work),
            result: None,
            reply,
        });
        self.jobs
            .send(Queued::Job(job))
            .await
            .map_err(|_| writer_gone())?;
        result.await.map_err(|_| writer_gone())?
    }

    /// Appends in the next batch; returns the outcome once that batch is committed.
    pub(super) async fn append(
        &self,
        name: StreamName,
        request: AppendRequest,
    ) -> Result<AppendOutcome, StorageError> {
        let (reply, result) = oneshot::channel();
        let append = QueuedAppend {
            name,
            request,
            result: None,
        };
        self.jobs
            .send(Queued::Append(append, reply))
            .await
            .map_err(|_| writer_gone())?;
        result.await.map_err(|_| writer_gone())?
    }
}

async fn run(mut conn: SqliteConnection, mut queue: mpsc::Receiver<Queued>, clock: Arc<dyn Clock>) {
    let mut batch: Vec<Queued> = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let commit = commit_batch(&mut conn, &mut batch, &*clock).await;
        if commit.is_err() {
            let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
        }
        for queued in batch.drain(..) {
            queued.finish(commit.clone());
        }
    }
}

async fn commit_batch(
    conn: &mut SqliteConnection,
    batch: &mut [Queued],
    clock: &dyn Clock,
) -> Result<(), String> {
    let failed = |what: &str, e: sqlx::Error| format!("sqlite {what}: {e}");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *conn)
        .await
        .map_err(|e| failed("begin", e))?;
    // Read only now: BEGIN IMMEDIATE may have waited up to busy_timeout for another instance's
    // write, and expiry must be judged (and last access written) at the time this batch
    // holds the lock, or an append could revive a stream that expired meanwhile.
    let now = now_ms(clock);
    // Runs of consecutive appends are applied together; other jobs keep their queue position.
    let mut start = 0;
    while start < batch.len() {
        let end = batch[start..]
            .iter()
            .position(|q| !matches!(q, Queued::Append(..)))
            .map_or(batch.len(), |n| start + n);
        if end > start {
            let mut run: Vec<&mut QueuedAppend> = batch[start..end]
                .iter_mut()
                .filter_map(|q| match q {
                    Queued::Append(append, _) => Some(append),
                    Queued::Job(_) => None,
                })
                .collect();
            batch_append::apply(conn, &mut run, now)
                .await
                .map_err(|e| format!("sqlite append: {e}"))?;
            start = end;
        } else {
            if let Queued::Job(job) = &mut batch[start] {
                job.run(conn).await;
            }
            start += 1;
        }
    }
    sqlx::query("COMMIT")
        .execute(&mut *conn)
        .await
        .map_err(|e| failed("commit", e))?;
    Ok(())
}
