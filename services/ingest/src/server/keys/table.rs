//! The key log folded into a table. The fold is commutative and idempotent (a creation never
//! replaces a known key, a revocation sticks whichever arrives first), so two catch-up reads of
//! the same log racing on one node may apply their batches in either order, or twice, and
//! still leave the same table.

use std::collections::HashMap;

use courier_traits::storage::Offset;

use super::entry::LogEntry;
use crate::server::auth::{KeyDigest, KeyRecord, is_valid_app_id};

/// A key as the admin API lists it: never the key, nor its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// UUIDv7.
    pub id: String,
    /// The app the key sends for.
    pub app_id: String,
    /// A label.
    pub name: String,
    /// RFC 3339, UTC, as logged.
    pub created_at: String,
    /// When it was revoked (RFC 3339, UTC), if it was.
    pub revoked_at: Option<String>,
}

impl KeyInfo {
    /// True once revoked.
    pub fn revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}

struct Entry {
    info: KeyInfo,
    digest: KeyDigest,
}

/// The folded log and how far it has been read.
#[derive(Default)]
pub(crate) struct KeyTable {
    keys: HashMap<String, Entry>,
    /// Ids by the first 16 hex characters of their digest: a lookup finds candidates by a
    /// prefix, and the checker compares full digests in constant time.
    by_prefix: HashMap<String, Vec<String>>,
    /// Revocations read before their creation (only when batches race): applied on creation.
    early_revocations: HashMap<String, String>,
    /// The offset after the last applied record, `None` before any.
    offset: Option<Offset>,
}

fn prefix_of(digest: &KeyDigest) -> String {
    let mut hex = digest.to_hex();
    hex.truncate(16);
    hex
}

impl KeyTable {
    /// Where the next catch-up read starts.
    pub(crate) fn offset(&self) -> Option<Offset> {
        self.offset.clone()
    }

    /// Applies a batch read from `from`, ending at `next`. Records that cannot be read are
    /// skipped with a warning: a bad record written by someone else must not stop the log.
    pub(crate) fn apply(&mut self, records: &[&[u8]], next: Offset) {
        for bytes in records {
            match LogEntry::from_json(bytes) {
                Ok(entry) => self.apply_entry(entry),
                Err(e) => tracing::warn!(error = %e, "unreadable key log record skipped"),
            }
        }
        if self.offset.as_ref().is_none_or(|done| *done < next) {
            self.offset = Some(next);
        }
    }

    fn apply_entry(&mut self, entry: LogEntry) {
        match entry {
            LogEntry::Created {
                id,
                app_id,
                name,
                sha256,
                created_at,
            } => {
                if self.keys.contains_key(&id) {
                    return;
                }
                let Some(digest) = KeyDigest::from_hex(&sha256) else {
                    tracing::warn!(key_id = %id, "key log record with a bad sha256 skipped");
                    return;
                };
                if !is_valid_app_id(&app_id) {
                    tracing::warn!(key_id = %id, "key log record with a bad app_id skipped");
                    return;
                }
                let revoked_at = self.early_revocations.remove(&id);
                self.by_prefix
                    .entry(prefix_of(&digest))
                    .or_default()
                    .push(id.clone());
                let info = KeyInfo {
                    id: id.clone(),
                    app_id,
                    name,
                    created_at,
                    revoked_at,
                };
                self.keys.insert(id, Entry { info, digest });
            }
            LogEntry::Revoked { id, revoked_at } => match self.keys.get_mut(&id) {
                Some(entry) => {
                    entry.info.revoked_at.get_or_insert(revoked_at);
                }
                None => {
                    self.early_revocations.entry(id).or_insert(revoked_at);
                }
            },
        }
    }

    /// The records whose digest shares `digest`'s index prefix.
    pub(crate) fn lookup(&self, digest: &KeyDigest) -> Vec<KeyRecord> {
        let Some(ids) = self.by_prefix.get(&prefix_of(digest)) else {
            return Vec::new();
        };
        ids.iter()
            .filter_map(|id| self.keys.get(id))
            .map(|entry| KeyRecord {
                id: entry.info.id.clone(),
                app_id: entry.info.app_id.clone(),
                name: entry.info.name.clone(),
                digest: entry.digest,
                revoked: entry.info.revoked(),
            })
            .collect()
    }

    /// The key `id`, if known.
    pub(crate) fn get(&self, id: &str) -> Option<KeyInfo> {
        self.keys.get(id).map(|entry| entry.info.clone())
    }

    /// The keys of `app_id` (all keys for `None`), newest first as upstream lists them
    /// (UUIDv7 ids sort by creation time).
    pub(crate) fn list(&self, app_id: Option<&str>) -> Vec<KeyInfo> {
        let mut keys: Vec<KeyInfo> = self
            .keys
            .values()
            .filter(|entry| app_id.is_none_or(|app| entry.info.app_id == app))
            .map(|entry| entry.info.clone())
            .collect();
        keys.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(id: &str, key: &str) -> Vec<u8> {
        LogEntry::Created {
            id: id.into(),
            app_id: "app-1".into(),
            name: "n".into(),
            sha256: KeyDigest::of_key(key).to_hex(),
            created_at: format!("2026-01-01T00:00:0{id}Z"),
        }
        .to_json()
    }

    fn revoked(id: &str, at: &str) -> Vec<u8> {
        LogEntry::Revoked {
            id: id.into(),
            revoked_at: at.into(),
        }
        .to_json()
    }

    fn offset(n: u32) -> Offset {
        Offset::parse(&format!("{n:016}")).expect("offset")
    }

    fn fold(batches: &[(&[Vec<u8>], u32)]) -> KeyTable {
        let mut table = KeyTable::default();
        for (records, next) in batches {
            let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
            table.apply(&slices, offset(*next));
        }
        table
    }

    #[test]
    fn racing_batches_fold_to_the_same_table_in_any_order() {
        let key = "a".repeat(64);
        let log = [created("1", &key), revoked("1", "r1"), revoked("1", "r2")];
        let whole = fold(&[(&log, 3)]);
        // A short batch applied after the longer one, and the log replayed out of order.
        let late = fold(&[(&log, 3), (&log[..1], 1)]);
        let reversed: Vec<Vec<u8>> = log.iter().rev().cloned().collect();
        let out_of_order = fold(&[(&reversed, 3)]);
        for table in [&whole, &late, &out_of_order] {
            let info = table.get("1").expect("known");
            assert!(info.revoked());
            assert_eq!(table.offset(), Some(offset(3)));
            let found = table.lookup(&KeyDigest::of_key(&key));
            assert_eq!(found.len(), 1);
            assert!(found[0].revoked);
        }
        assert_eq!(whole.get("1").and_then(|i| i.revoked_at), Some("r1".into()));
    }

    #[test]
    fn bad_records_are_skipped_and_lists_are_newest_first() {
        let mut bad_digest = created("3", &"c".repeat(64));
        bad_digest = String::from_utf8(bad_digest)
            .expect("utf8")
            .replace("\"sha256\":\"", "\"sha256\":\"X")
            .into_bytes();
        let log = [
            created("1", &"a".repeat(64)),
            b"not json".to_vec(),
            created("2", &"b".repeat(64)),
            bad_digest,
        ];
        let table = fold(&[(&log, 4)]);
        let ids: Vec<String> = table
            .list(Some("app-1"))
            .into_iter()
            .map(|k| k.id)
            .collect();
        assert_eq!(ids, ["2", "1"]);
        assert!(table.list(Some("app-2")).is_empty());
        assert!(table.lookup(&KeyDigest::of_key(&"d".repeat(64))).is_empty());
    }
}
