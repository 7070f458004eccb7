//! Per-key async locks: serialise one process's read-check-write sequences on one key (a
//! stream), so optimistic compare-and-set retries only happen between nodes, not between the
//! tasks of one node.
//!
//! The lock is tokio's async mutex, held across the awaits of one write on purpose: that
//! sequence *is* the critical section. Entries go away when nobody holds or waits for them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

type Entry = Arc<tokio::sync::Mutex<()>>;

#[derive(Default)]
pub(crate) struct KeyedLocks {
    locks: Mutex<HashMap<String, Entry>>,
}

/// Held while one key's write runs; releases (and forgets idle keys) on drop.
pub(crate) struct KeyedGuard<'a> {
    owner: &'a KeyedLocks,
    key: String,
    entry: Entry,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl KeyedLocks {
    pub(crate) async fn lock(&self, key: &str) -> KeyedGuard<'_> {
        let entry = {
            let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
            locks.entry(key.to_owned()).or_default().clone()
        };
        let guard = entry.clone().lock_owned().await;
        KeyedGuard {
            owner: self,
            key: key.to_owned(),
            entry,
            guard: Some(guard),
        }
    }
}

impl Drop for KeyedGuard<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut locks = self
            .owner
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Two references left: the map's and ours. Nobody else holds or waits.
        if Arc::strong_count(&self.entry) == 2 {
            locks.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serialises_one_key_and_forgets_idle_ones() {
        let locks = KeyedLocks::default();
        let first = locks.lock("a").await;
        let other_key = locks.lock("b").await; // another key is independent
        let blocked =
            tokio::time::timeout(std::time::Duration::from_millis(20), locks.lock("a")).await;
        assert!(blocked.is_err(), "a second holder of the same key waits");
        drop(first);
        drop(other_key);
        let again = locks.lock("a").await;
        drop(again);
        assert!(locks.locks.lock().expect("lock").is_empty());
    }
}
