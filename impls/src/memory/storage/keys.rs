//! The dedup keys of a stream's keyed appends, held so that no append pays for all of them.
//!
//! One `HashMap` of every key stalled every writer when it grew: at ~1.8 M keys its rehash
//! hashed every key again and faulted in a table of hundreds of MB under the storage's lock
//! (1-2.4 s in the ingest benchmark). Here the keys are spread over [`SHARDS`] hash tables
//! by their hash, which each entry keeps: a table that grows moves 1/[`SHARDS`] of the keys
//! and hashes none of them again. And keys live in generations by commit time, so those the
//! window no longer matches go a whole generation at a time (see
//! [`KeyIndex::forget_expired`]) instead of one by one from a second, ordered copy of every
//! key.

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

use crate::rules::{StoredKey, key_is_live};

/// Hash tables per generation (the shard is picked from bits 32..40 of the key's hash, which
/// the tables' own bucket choice (low bits) and control bytes (top 7 bits) do not use).
const SHARDS: usize = 256;

/// How many generations a window spans: a generation takes new keys for a quarter of the
/// window, so keys are dropped at most a quarter window after they expire (memory holds at
/// most 1.25 windows of keys) and a lookup probes at most about five generations.
const GENERATIONS_PER_WINDOW: u64 = 4;

/// One committed key, with its tag in the same allocation.
struct KeyEntry {
    hash: u64,
    committed_ms: u64,
    /// The key followed by the tag.
    key_and_tag: Box<str>,
    key_len: usize,
}

impl KeyEntry {
    fn key(&self) -> &str {
        self.key_and_tag.get(..self.key_len).unwrap_or_default()
    }

    fn tag(&self) -> &str {
        self.key_and_tag.get(self.key_len..).unwrap_or_default()
    }
}

/// The keys committed between `opened_ms` and the next generation's opening.
pub(super) struct Generation {
    opened_ms: u64,
    /// The latest commit in it: once that has expired, all of it has.
    newest_ms: u64,
    shards: Box<[HashTable<KeyEntry>]>,
}

impl Generation {
    fn new(now_ms: u64) -> Generation {
        Generation {
            opened_ms: now_ms,
            newest_ms: now_ms,
            shards: (0..SHARDS).map(|_| HashTable::new()).collect(),
        }
    }

    fn shard(&self, hash: u64) -> &HashTable<KeyEntry> {
        &self.shards[shard_of(hash)]
    }

    fn find(&self, hash: u64, key: &str) -> Option<&KeyEntry> {
        self.shard(hash)
            .find(hash, |e| e.hash == hash && e.key() == key)
    }
}

fn shard_of(hash: u64) -> usize {
    (hash >> 32) as usize % SHARDS
}

/// Generations dropped from a [`KeyIndex`]: freeing millions of keys takes a while, so the
/// storage drops these after releasing its lock.
#[must_use = "release it after releasing the storage's lock"]
pub(super) struct ExpiredKeys {
    generations: Vec<Generation>,
}

impl ExpiredKeys {
    /// Frees the keys (call it with no lock held).
    pub(super) fn release(self) {
        drop(self.generations);
    }
}

#[derive(Default)]
pub(super) struct KeyIndex {
    hasher: RandomState,
    /// Oldest first; new keys go to the last.
    generations: VecDeque<Generation>,
}

impl KeyIndex {
    /// The latest commit of `key`, if it is still held (live or not: the caller judges).
    pub(super) fn get(&self, key: &str) -> Option<StoredKey> {
        let hash = self.hasher.hash_one(key);
        // Newest first: a key committed again lives in a later generation than its first
        // commit, and only the latest commit counts.
        self.generations
            .iter()
            .rev()
            .find_map(|generation| generation.find(hash, key))
            .map(|entry| StoredKey {
                tag: entry.tag().to_owned(),
                committed_ms: entry.committed_ms,
            })
    }

    /// Records `key` as committed at `now_ms` with `tag`, replacing an earlier commit.
    pub(super) fn insert(&mut self, key: &str, tag: &str, now_ms: u64, window_ms: u64) {
        let span = (window_ms / GENERATIONS_PER_WINDOW).max(1);
        let open_new = self
            .generations
            .back()
            .is_none_or(|g| now_ms.saturating_sub(g.opened_ms) >= span);
        if open_new {
            self.generations.push_back(Generation::new(now_ms));
        }
        let Some(generation) = self.generations.back_mut() else {
            return;
        };
        generation.newest_ms = generation.newest_ms.max(now_ms);
        let hash = self.hasher.hash_one(key);
        let entry = KeyEntry {
            hash,
            committed_ms: now_ms,
            key_and_tag: [key, tag].concat().into_boxed_str(),
            key_len: key.len(),
        };
        let shard = &mut generation.shards[shard_of(hash)];
        // An older commit in this generation (one the window no longer matched) is replaced;
        // one in an older generation is shadowed until that generation goes.
        match shard.find_mut(hash, |e| e.hash == hash && e.key() == key) {
            Some(existing) => *existing = entry,
            None => {
                shard.insert_unique(hash, entry, |e| e.hash);
            }
        }
    }

    /// Removes the generations whose every key is older than `window_ms` at `now_ms`.
    pub(super) fn forget_expired(&mut self, now_ms: u64, window_ms: u64) -> ExpiredKeys {
        let mut expired = Vec::new();
        while let Some(oldest) = self.generations.front()
            && !key_is_live(oldest.newest_ms, now_ms, window_ms)
        {
            expired.extend(self.generations.pop_front());
        }
        ExpiredKeys {
            generations: expired,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.generations
            .iter()
            .flat_map(|g| g.shards.iter())
            .map(HashTable::len)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: u64 = 4_000;

    fn committed(index: &KeyIndex, key: &str) -> Option<(String, u64)> {
        index.get(key).map(|k| (k.tag, k.committed_ms))
    }

    #[test]
    fn the_latest_commit_of_a_key_answers_across_generations() {
        let mut index = KeyIndex::default();
        index.insert("a", "first", 1_000, WINDOW);
        index.insert("b", "only", 1_500, WINDOW);
        // A later generation (a quarter window on) commits "a" again.
        index.insert("a", "second", 6_000, WINDOW);
        assert_eq!(index.generations.len(), 2);
        assert_eq!(committed(&index, "a"), Some(("second".into(), 6_000)));
        assert_eq!(committed(&index, "b"), Some(("only".into(), 1_500)));
        assert_eq!(committed(&index, "c"), None);
        // Within one generation a new commit replaces the old one.
        index.insert("a", "third", 6_100, WINDOW);
        assert_eq!(committed(&index, "a"), Some(("third".into(), 6_100)));
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn a_generation_goes_whole_once_its_newest_key_expired() {
        let mut index = KeyIndex::default();
        index.insert("a", "t", 1_000, WINDOW);
        index.insert("b", "t", 1_900, WINDOW);
        index.insert("c", "t", 2_000, WINDOW);
        assert_eq!(index.generations.len(), 2, "c opened a new generation");
        // At 5.9 s "a" has expired but "b" has not: their generation stays.
        assert_eq!(index.forget_expired(5_899, WINDOW).generations.len(), 0);
        assert_eq!(index.len(), 3);
        assert_eq!(index.forget_expired(5_900, WINDOW).generations.len(), 1);
        assert_eq!(committed(&index, "a"), None);
        assert_eq!(committed(&index, "b"), None);
        assert_eq!(committed(&index, "c"), Some(("t".into(), 2_000)));
        assert_eq!(index.forget_expired(6_000, WINDOW).generations.len(), 1);
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn a_clock_going_backwards_keeps_keys_and_a_zero_window_keeps_none() {
        let mut index = KeyIndex::default();
        index.insert("a", "t", 10_000, WINDOW);
        assert_eq!(index.forget_expired(1_000, WINDOW).generations.len(), 0);
        assert!(index.get("a").is_some());
        index.insert("z", "t", 10_000, 0);
        assert_eq!(index.forget_expired(10_000, 0).generations.len(), 1);
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn keys_and_tags_of_any_length_read_back_as_committed() {
        let mut index = KeyIndex::default();
        let long = "k".repeat(1024);
        for (key, tag) in [("x", ""), ("xy", "z"), (long.as_str(), "é")] {
            index.insert(key, tag, 1, WINDOW);
            assert_eq!(committed(&index, key), Some((tag.into(), 1)));
        }
        assert_eq!(committed(&index, "xyz"), None);
    }

    #[test]
    fn growth_is_spread_so_no_table_holds_much_more_than_its_share() {
        let mut index = KeyIndex::default();
        let keys = 200 * SHARDS;
        for n in 0..keys {
            index.insert(&format!("key-{n}"), "t", 1, WINDOW);
        }
        let generation = &index.generations[0];
        let largest = generation.shards.iter().map(HashTable::len).max();
        // A table that grows rehashes only its own keys: with the keys spread evenly that is
        // ~1/SHARDS of them (a single map would move all 51 200).
        assert!(
            largest.is_some_and(|l| l < 2 * keys / SHARDS),
            "{largest:?}"
        );
        assert_eq!(index.len(), keys);
    }
}
