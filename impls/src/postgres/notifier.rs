//! The notifier: the `NOTIFY`s of appends (and of [`PgBus`](super::PgBus) publishes), sent
//! after their commit, the names of several commits in one transaction of their own that does
//! not wait for its WAL flush.
//!
//! Why: Postgres commits the transactions that notified one at a time. `PreCommit_Notify`
//! takes a database-wide lock, held until the commit's WAL flush has returned, so that
//! notifications queue in commit order. Appends that notified inside their own transaction
//! therefore lost group commit across streams: each paid its own fsync while the others
//! waited (3.1k appends/s at c=32 across 1000 streams, against 16.5k to one stream, where one
//! transaction carries a whole batch; benches/README.md). Sent from here, the appends' commits
//! flush together, and one notification transaction carries every stream appended to
//! meanwhile. It runs with `synchronous_commit = off`: a notification is not durable whatever
//! the setting (a crash loses the ones not yet delivered), so waiting for a flush would only
//! hold the lock longer.
//!
//! What it changes for waiters: this node's are woken by the storage (or bus) at once after
//! the commit; other nodes' one round trip later than before. The notifier sends on a
//! connection of its own, whose backend process id the node's listener knows
//! ([`Notifier::own_process`]), so the listener skips the notifications it sends: this
//! node's waiters are woken once, not a second time a round trip later (a second wake-up
//! would send them to read again, which delayed the next one). If this node dies between an
//! append's commit and its notification, other nodes' waits on that stream end at their
//! timeout (or at the stream's next notification; a bus subscription reads its topic every
//! second anyway) instead of at once; no record is lost.

use std::collections::HashSet;
use std::mem;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool, Row};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Most stream names kept for the next notification; past this, the next one asks every
/// node to wake all its waiters instead (see [`WAKE_ALL`]).
const MAX_PENDING: usize = 65_536;
/// Most stream names in one notification statement.
const MAX_PER_TRANSACTION: usize = 4_096;
/// The payload that wakes every waiter of a node: never a stream name (those are not empty).
pub(super) const WAKE_ALL: &str = "";
/// Waits between failed notification attempts: the first, and the most.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(5);
/// How long the last names are tried when the storage is dropped.
const LAST_FLUSH: Duration = Duration::from_secs(2);

/// The streams whose notifications are due.
#[derive(Debug, Default, PartialEq, Eq)]
enum Pending {
    #[default]
    Nothing,
    Streams(HashSet<String>),
    /// More than [`MAX_PENDING`] streams: every waiter is woken.
    Everything,
}

impl Pending {
    fn add(&mut self, name: &str) {
        match self {
            Pending::Nothing => *self = Pending::Streams(HashSet::from([name.to_owned()])),
            Pending::Streams(names) if names.len() < MAX_PENDING => {
                names.insert(name.to_owned());
            }
            Pending::Streams(names) if names.contains(name) => {}
            Pending::Streams(_) => *self = Pending::Everything,
            Pending::Everything => {}
        }
    }

    /// Puts back `earlier`, taken before and not sent, beside what came since.
    fn merge(&mut self, earlier: Pending) {
        match earlier {
            Pending::Nothing => {}
            Pending::Everything => *self = Pending::Everything,
            Pending::Streams(names) => {
                for name in names {
                    self.add(&name);
                }
            }
        }
    }

    /// The payloads to send.
    fn payloads(&self) -> Vec<&str> {
        match self {
            Pending::Nothing => Vec::new(),
            Pending::Streams(names) => names.iter().map(String::as_str).collect(),
            Pending::Everything => vec![WAKE_ALL],
        }
    }
}

/// A storage instance's notifier; its task stops when `stop` is cancelled, after one last
/// attempt at what is pending.
pub(super) struct Notifier {
    pending: Mutex<Pending>,
    due: Notify,
    /// The backend process id of the notifier's connection (0 before the first one).
    own_process: Arc<AtomicU32>,
}

impl Notifier {
    /// Starts the task that notifies `channel` on a connection of its own to `pool`'s server.
    pub(super) fn start(
        pool: &PgPool,
        channel: &'static str,
        stop: CancellationToken,
    ) -> Arc<Notifier> {
        let notifier = Arc::new(Notifier {
            pending: Mutex::new(Pending::Nothing),
            due: Notify::new(),
            own_process: Arc::new(AtomicU32::new(0)),
        });
        let options = (*pool.connect_options()).clone();
        tokio::spawn(run(notifier.clone(), options, channel, stop));
        notifier
    }

    /// The backend process id the notifier's notifications come from, for the listener to
    /// skip them (their waiters were woken at the commit).
    pub(super) fn own_process(&self) -> Arc<AtomicU32> {
        self.own_process.clone()
    }

    /// Notifies every node (this one too) that `name` changed, soon.
    pub(super) fn queue(&self, name: &str) {
        self.lock().add(name);
        self.due.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(&self) -> Pending {
        mem::take(&mut *self.lock())
    }
}

async fn run(
    notifier: Arc<Notifier>,
    options: PgConnectOptions,
    channel: &'static str,
    stop: CancellationToken,
) {
    let mut connection = None;
    let mut retry = FIRST_RETRY;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = notifier.due.notified() => {}
        }
        let pending = notifier.take();
        // A send that hangs (a frozen server) must not keep the task from stopping.
        let sent = tokio::select! {
            sent = send(&mut connection, &options, &notifier.own_process, channel, &pending) => Some(sent),
            () = stop.cancelled() => None,
        };
        let Some(sent) = sent else {
            // Cut off mid-statement: the connection's state is unknown.
            notifier.own_process.store(0, Ordering::Relaxed);
            connection = None;
            notifier.lock().merge(pending);
            break;
        };
        match sent {
            Ok(()) => retry = FIRST_RETRY,
            Err(error) => {
                tracing::warn!(%error, retry_in = ?retry, "postgres notification failed; other nodes' waiters are woken late");
                notifier.lock().merge(pending);
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(MAX_RETRY);
                notifier.due.notify_one();
            }
        }
    }
    let last = notifier.take();
    let sent = tokio::time::timeout(
        LAST_FLUSH,
        send(
            &mut connection,
            &options,
            &notifier.own_process,
            channel,
            &last,
        ),
    )
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        tracing::warn!(
            "the last postgres notifications were not sent; other nodes' waiters are woken late"
        );
    }
    if let Some(connection) = connection {
        let _ = connection.close().await;
    }
}

/// Sends `pending` on `connection` (opened first if there is none, and dropped after a
/// failure), at most [`MAX_PER_TRANSACTION`] names to a statement. Each statement is its own
/// transaction, with `synchronous_commit` off for it alone (`set_config(…, true)`).
async fn send(
    connection: &mut Option<PgConnection>,
    options: &PgConnectOptions,
    own_process: &AtomicU32,
    channel: &str,
    pending: &Pending,
) -> Result<(), sqlx::Error> {
    let payloads = pending.payloads();
    if payloads.is_empty() {
        return Ok(());
    }
    let open = match connection {
        Some(open) => open,
        None => {
            let mut opened = PgConnection::connect_with(options).await?;
            let process: i32 = sqlx::query("SELECT pg_backend_pid()")
                .fetch_one(&mut opened)
                .await?
                .try_get(0)?;
            own_process.store(u32::try_from(process).unwrap_or(0), Ordering::Relaxed);
            connection.insert(opened)
        }
    };
    for chunk in payloads.chunks(MAX_PER_TRANSACTION) {
        let sent = sqlx::query(
            "SELECT pg_notify($1, payload)
             FROM set_config('synchronous_commit', 'off', true), unnest($2::TEXT[]) AS payload",
        )
        .bind(channel)
        .bind(chunk)
        .execute(&mut *open)
        .await;
        if let Err(error) = sent {
            // Its process id may go to another backend once it is gone.
            own_process.store(0, Ordering::Relaxed);
            *connection = None;
            return Err(error);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kept_once_each() {
        let mut pending = Pending::Nothing;
        for name in ["a", "b", "a"] {
            pending.add(name);
        }
        let mut payloads = pending.payloads();
        payloads.sort_unstable();
        assert_eq!(payloads, ["a", "b"]);
    }

    #[test]
    fn too_many_names_wake_everything() {
        let mut pending = Pending::Nothing;
        for i in 0..MAX_PENDING {
            pending.add(&i.to_string());
        }
        assert_eq!(pending.payloads().len(), MAX_PENDING);
        pending.add("0");
        assert_eq!(pending.payloads().len(), MAX_PENDING, "a name already kept");
        pending.add("one more");
        assert_eq!(pending, Pending::Everything);
        assert_eq!(pending.payloads(), [WAKE_ALL]);
        pending.add("after");
        assert_eq!(pending, Pending::Everything);
    }

    #[test]
    fn names_not_sent_are_put_back() {
        let mut since = Pending::Nothing;
        since.add("new");
        let mut earlier = Pending::Nothing;
        earlier.add("old");
        since.merge(earlier);
        let mut payloads = since.payloads();
        payloads.sort_unstable();
        assert_eq!(payloads, ["new", "old"]);
        since.merge(Pending::Everything);
        assert_eq!(since, Pending::Everything);
    }
}
