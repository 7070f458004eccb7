//! Wake-ups for commits made by other processes (or other `SqliteStreamStorage` instances) on
//! the same file. Those commits never pass through this instance's writer, so its in-process
//! wake-ups do not fire for them.
//!
//! A task owned by the storage polls `PRAGMA data_version` on a connection of its own (each
//! poll on a blocking thread, as SQLite calls block): the
//! value changes when any other connection commits. While nobody waits it sleeps until a
//! waiter subscribes. When the version changed it reads the state of the waited streams in one
//! statement and wakes those whose row changed, so a busy file does not make every waiter
//! re-read. A stream seen for the first time is woken once after its state is recorded: a
//! commit that landed between its waiter's own read and that record is then not missed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use tokio_util::sync::CancellationToken;

use crate::wakers::Wakers;

/// The columns of a stream row whose change can end a wait. `last_access_ms` tells a stream
/// deleted and created again (which may get the same rowid and length) from the one before.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct RowStamp {
    rowid: i64,
    next_index: i64,
    closed: i64,
    soft_deleted: i64,
    last_access_ms: i64,
}

/// Stops the polling task when the last clone of the storage is dropped, or on `close`.
pub(super) struct ChangeWatch {
    stop: CancellationToken,
}

impl ChangeWatch {
    /// Starts polling on `conn` (a connection only this task uses) every `interval` while
    /// `wakers` has waiters.
    pub(super) fn start(conn: Connection, wakers: Arc<Wakers>, interval: Duration) -> ChangeWatch {
        let stop = CancellationToken::new();
        tokio::spawn(run(conn, wakers, interval, stop.clone()));
        ChangeWatch { stop }
    }

    /// Ends the polling task (it closes its connection).
    pub(super) fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for ChangeWatch {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn run(conn: Connection, wakers: Arc<Wakers>, interval: Duration, stop: CancellationToken) {
    let mut conn = Some(conn);
    let mut poller = Poller::default();
    loop {
        let waited = wakers.waited();
        if waited.is_empty() {
            poller = Poller::default();
            tokio::select! {
                () = stop.cancelled() => break,
                () = wakers.next_subscription() => continue,
            }
        }
        // The connection and the poller go to a blocking thread and come back with the result.
        let Some(polling) = conn.take() else { break };
        let mut taken = std::mem::take(&mut poller);
        let polled = tokio::task::spawn_blocking(move || {
            let result = taken.poll(&polling, waited);
            (polling, taken, result)
        })
        .await;
        let Ok((returned, back, result)) = polled else {
            break;
        };
        conn = Some(returned);
        poller = back;
        match result {
            Ok(changed) => {
                for name in changed {
                    wakers.wake(&name);
                }
                poller.failing = false;
            }
            Err(error) => {
                // Forget the version so the next poll reads every waited stream again.
                poller.version = None;
                if !poller.failing {
                    tracing::warn!(%error, "sqlite: cannot poll for other processes' commits; their appends wake waiters only at their timeout until this recovers");
                }
                poller.failing = true;
            }
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// What the last poll saw.
#[derive(Default)]
struct Poller {
    /// `PRAGMA data_version` at the last poll.
    version: Option<i64>,
    /// The state of each waited stream at the last poll (`None`: no row).
    seen: HashMap<String, Option<RowStamp>>,
    /// The last poll failed (warn once per failing spell).
    failing: bool,
}

impl Poller {
    /// Returns the waited streams to wake.
    fn poll(&mut self, conn: &Connection, waited: Vec<String>) -> rusqlite::Result<Vec<String>> {
        // The version is read before the rows: a commit after this read changes it again.
        let version: i64 = conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |row| row.get(0))?;
        let changed = self.version != Some(version);
        let waited_set: HashSet<&str> = waited.iter().map(String::as_str).collect();
        self.seen
            .retain(|name, _| waited_set.contains(name.as_str()));
        let to_read: Vec<&String> = waited
            .iter()
            .filter(|name| changed || !self.seen.contains_key(*name))
            .collect();
        if to_read.is_empty() {
            self.version = Some(version);
            return Ok(Vec::new());
        }
        let stamps = read_stamps(conn, &to_read)?;
        self.version = Some(version);
        let mut wake = Vec::new();
        for name in to_read {
            let now = stamps.get(name.as_str()).copied();
            match self.seen.insert(name.clone(), now) {
                Some(before) if before == now => {}
                _ => wake.push(name.clone()),
            }
        }
        Ok(wake)
    }
}

/// The row stamps of `names` (missing rows are left out).
fn read_stamps(
    conn: &Connection,
    names: &[&String],
) -> rusqlite::Result<HashMap<String, RowStamp>> {
    let mut select = conn.prepare_cached(
        "SELECT rowid, next_index, closed, soft_deleted, last_access_ms
         FROM courier_streams WHERE name = ?1",
    )?;
    let mut stamps = HashMap::with_capacity(names.len());
    for name in names {
        let mut rows = select.query([name.as_str()])?;
        if let Some(row) = rows.next()? {
            let stamp = RowStamp {
                rowid: row.get(0)?,
                next_index: row.get(1)?,
                closed: row.get(2)?,
                soft_deleted: row.get(3)?,
                last_access_ms: row.get(4)?,
            };
            stamps.insert((*name).clone(), stamp);
        }
    }
    Ok(stamps)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The task holds a clone of the wakers; it has ended once only the test's is left.
    async fn task_ended(wakers: &Arc<Wakers>) -> bool {
        for _ in 0..200 {
            if Arc::strong_count(wakers) == 1 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    async fn started(wakers: &Arc<Wakers>) -> ChangeWatch {
        let conn = Connection::open_in_memory().expect("connect");
        ChangeWatch::start(conn, wakers.clone(), Duration::from_millis(5))
    }

    #[tokio::test]
    async fn the_task_ends_when_the_watch_is_dropped_while_polling() {
        let wakers = Arc::<Wakers>::default();
        let watch = started(&wakers).await;
        let _waiter = wakers.subscribe("s");
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(watch);
        assert!(task_ended(&wakers).await, "the polling task still runs");
    }

    #[tokio::test]
    async fn the_task_ends_on_stop_while_idle() {
        let wakers = Arc::<Wakers>::default();
        let watch = started(&wakers).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        watch.stop();
        assert!(task_ended(&wakers).await, "the polling task still runs");
    }
}
