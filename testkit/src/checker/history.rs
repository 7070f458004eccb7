//! The history of a run: every operation's invocation and its completion, in one logical clock.
//!
//! Jepsen's vocabulary: an operation completes `ok` (it happened, with this result), `fail` (it
//! definitely did not happen: the request never left, or the service refused it) or `info` (we
//! cannot know: a timeout, a lost connection, a server error after the request was sent). An
//! operation that never completed (its task was stopped) counts as `info`. Recording `info`
//! instead of `fail` when in doubt is what lets the checkers stay sound.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<R> {
    /// It happened; this is what it returned.
    Ok(R),
    /// It definitely did not happen (why).
    Fail(String),
    /// It may or may not have happened (why).
    Info(String),
}

impl<R> Outcome<R> {
    /// The result, if the operation is known to have happened.
    pub fn ok(&self) -> Option<&R> {
        match self {
            Outcome::Ok(r) => Some(r),
            _ => None,
        }
    }

    /// True for `info`: the effect is unknown.
    pub fn is_info(&self) -> bool {
        matches!(self, Outcome::Info(_))
    }

    /// True for `fail`: the operation definitely had no effect.
    pub fn is_fail(&self) -> bool {
        matches!(self, Outcome::Fail(_))
    }
}

/// One operation of the history.
#[derive(Clone, Debug)]
pub struct Entry<O, R> {
    /// Position of the invocation in the history.
    pub id: usize,
    /// Who ran it (a client, a connection slot), for messages.
    pub process: usize,
    /// What was asked.
    pub op: O,
    /// Logical time of the invocation.
    pub invoked: u64,
    /// Logical time of the completion (`None`: never completed, treated as `info`).
    pub completed: Option<u64>,
    /// How it ended (`None` until completed).
    pub outcome: Option<Outcome<R>>,
}

impl<O, R> Entry<O, R> {
    /// The result, if the operation is known to have happened.
    pub fn ok(&self) -> Option<&R> {
        self.outcome.as_ref().and_then(Outcome::ok)
    }

    /// True if the operation definitely had no effect.
    pub fn failed(&self) -> bool {
        self.outcome.as_ref().is_some_and(Outcome::is_fail)
    }

    /// True if the effect is unknown (`info`, or never completed).
    pub fn unknown(&self) -> bool {
        self.outcome.as_ref().is_none_or(Outcome::is_info)
    }

    /// True if this operation completed before `other` was invoked (real-time order).
    pub fn precedes<P, S>(&self, other: &Entry<P, S>) -> bool {
        self.completed.is_some_and(|done| done < other.invoked)
    }
}

/// Records a history from any number of tasks. The lock is held only to push or update one
/// entry, never across an `.await`.
pub struct History<O, R> {
    clock: AtomicU64,
    entries: Mutex<Vec<Entry<O, R>>>,
}

/// The handle of an invoked operation, to complete it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpId(usize);

impl<O: Clone, R: Clone> Default for History<O, R> {
    fn default() -> Self {
        History::new()
    }
}

impl<O: Clone, R: Clone> History<O, R> {
    /// An empty history.
    pub fn new() -> History<O, R> {
        History {
            clock: AtomicU64::new(0),
            entries: Mutex::new(Vec::new()),
        }
    }

    /// The next tick of the logical clock (shared with anything else that must be ordered
    /// against operations, such as a hub client's deliveries and disconnections).
    pub fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst)
    }

    /// Records that `process` invokes `op`.
    pub fn invoke(&self, process: usize, op: O) -> OpId {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let id = entries.len();
        let invoked = self.tick();
        entries.push(Entry {
            id,
            process,
            op,
            invoked,
            completed: None,
            outcome: None,
        });
        OpId(id)
    }

    /// Records how the operation `id` ended.
    pub fn complete(&self, id: OpId, outcome: Outcome<R>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let completed = self.tick();
        if let Some(entry) = entries.get_mut(id.0) {
            entry.completed = Some(completed);
            entry.outcome = Some(outcome);
        }
    }

    /// A copy of the history so far.
    pub fn entries(&self) -> Vec<Entry<O, R>> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many operations were invoked.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True if nothing was invoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Counts of a history's outcomes, for the run's summary line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Operations invoked.
    pub invoked: usize,
    /// Completed `ok`.
    pub ok: usize,
    /// Completed `fail`.
    pub fail: usize,
    /// `info` or never completed.
    pub info: usize,
}

impl Tally {
    /// Counts `entries`.
    pub fn of<O, R>(entries: &[Entry<O, R>]) -> Tally {
        let mut tally = Tally {
            invoked: entries.len(),
            ..Tally::default()
        };
        for entry in entries {
            if entry.ok().is_some() {
                tally.ok += 1;
            } else if entry.failed() {
                tally.fail += 1;
            } else {
                tally.info += 1;
            }
        }
        tally
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} operations ({} ok, {} fail, {} info)",
            self.invoked, self.ok, self.fail, self.info
        )
    }
}

/// The most frequent reasons of `fail` and `info` outcomes (at most `top`), for a run's log:
/// `(count, "info: timed out after 5s")`.
pub fn top_reasons<O, R>(entries: &[Entry<O, R>], top: usize) -> Vec<(usize, String)> {
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for entry in entries {
        let reason = match &entry.outcome {
            Some(Outcome::Fail(why)) => format!("fail: {why}"),
            Some(Outcome::Info(why)) => format!("info: {why}"),
            None => "info: never completed".to_owned(),
            Some(Outcome::Ok(_)) => continue,
        };
        // Long numbers vary per operation (offsets, ids): group by the rest.
        let key = mask_long_numbers(&reason);
        *counts.entry(key).or_default() += 1;
    }
    let mut sorted: Vec<(usize, String)> = counts.into_iter().map(|(k, n)| (n, k)).collect();
    sorted.sort_by(|a, b| b.cmp(a));
    sorted.truncate(top);
    sorted
}

/// `reason` with every run of 4 or more digits replaced by `#` (status codes stay), cut to 120
/// characters.
fn mask_long_numbers(reason: &str) -> String {
    let mut out = String::new();
    let mut digits = String::new();
    for c in reason.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        if digits.len() >= 4 {
            out.push('#');
        } else {
            out.push_str(&digits);
        }
        digits.clear();
        out.push(c);
    }
    out.trim_end().chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_time_order_follows_completion_and_invocation() {
        let history: History<&str, u8> = History::new();
        let a = history.invoke(0, "a");
        let b = history.invoke(1, "b");
        history.complete(a, Outcome::Ok(1));
        let c = history.invoke(2, "c");
        history.complete(c, Outcome::Info("timeout".into()));
        let entries = history.entries();
        assert!(entries[0].precedes(&entries[2]));
        assert!(!entries[0].precedes(&entries[1]), "concurrent");
        assert!(!entries[1].precedes(&entries[2]), "b never completed");
        assert!(entries[1].unknown() && entries[2].unknown());
        let _ = b;
        assert_eq!(
            Tally::of(&entries),
            Tally {
                invoked: 3,
                ok: 1,
                fail: 0,
                info: 2
            }
        );
    }
}
