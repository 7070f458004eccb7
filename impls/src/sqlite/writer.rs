//! Group commit: one task owns the write connection and commits every write queued
//! meanwhile in one transaction, so one fsync covers many appends.
//!
//! Each job runs inside its own `SAVEPOINT`: a job that fails is rolled back alone and the
//! others still commit. A job's caller hears back only after the commit (or its failure), so
//! an acknowledged append is durable.

use async_trait::async_trait;
use courier_traits::storage::StorageError;
use futures::future::BoxFuture;
use sqlx::SqliteConnection;
use tokio::sync::{mpsc, oneshot};

use super::db_error;

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
        let outcome = match (self.result, commit) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (_, Err(message)) => Err(StorageError::Unavailable {
                message,
                source: None,
            }),
            (None, Ok(())) => Err(StorageError::Backend {
                message: "write job did not run".into(),
                source: None,
            }),
        };
        let _ = self.reply.send(outcome);
    }
}

/// The handle to the writer task; the task ends when every handle is gone.
#[derive(Clone)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    /// Starts the writer task on `conn`.
    pub(super) fn start(conn: SqliteConnection) -> Writer {
        let (jobs, queue) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(conn, queue));
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
        let gone = || StorageError::Unavailable {
            message: "sqlite writer stopped".into(),
            source: None,
        };
        self.jobs.send(job).await.map_err(|_| gone())?;
        result.await.map_err(|_| gone())?
    }
}

async fn run(mut conn: SqliteConnection, mut queue: mpsc::Receiver<Box<dyn Job>>) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let commit = commit_batch(&mut conn, &mut batch).await;
        if commit.is_err() {
            let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
        }
        for job in batch.drain(..) {
            job.finish(commit.clone());
        }
    }
}

async fn commit_batch(
    conn: &mut SqliteConnection,
    batch: &mut [Box<dyn Job>],
) -> Result<(), String> {
    let failed = |what: &str, e: sqlx::Error| format!("sqlite {what}: {e}");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *conn)
        .await
        .map_err(|e| failed("begin", e))?;
    for job in batch.iter_mut() {
        job.run(conn).await;
    }
    sqlx::query("COMMIT")
        .execute(&mut *conn)
        .await
        .map_err(|e| failed("commit", e))?;
    Ok(())
}
