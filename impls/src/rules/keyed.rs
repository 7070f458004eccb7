//! The keyed-append rules: which records of a keyed append are written and which are
//! duplicates, given the keys the stream already holds (read in the same transaction or under
//! the same lock as the write that follows).

use std::collections::HashMap;
use std::time::Duration;

use courier_traits::storage::{KeyedOutcome, KeyedRecord, Offset, StorageError};

use super::append::check_record_sizes;

/// A dedup key as stored with a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredKey {
    /// The tag of the record that committed it.
    pub(crate) tag: String,
    /// When it was committed, in milliseconds on the storage's clock.
    pub(crate) committed_ms: u64,
}

/// `window` in whole milliseconds (saturating), the precision every backend stores.
pub(crate) fn window_ms(window: Duration) -> u64 {
    u64::try_from(window.as_millis()).unwrap_or(u64::MAX)
}

/// Whether a key committed at `committed_ms` still deduplicates at `now_ms`. A clock that went
/// backwards keeps the key live rather than letting a duplicate through.
pub(crate) fn key_is_live(committed_ms: u64, now_ms: u64, window_ms: u64) -> bool {
    now_ms.saturating_sub(committed_ms) < window_ms
}

/// The checks every storage makes on a keyed append before touching its state.
pub(crate) fn validate_keyed(
    records: &[KeyedRecord],
    max_record_bytes: usize,
) -> Result<(), StorageError> {
    for record in records {
        record.validate()?;
    }
    match records.iter().find(|r| r.data.len() > max_record_bytes) {
        Some(r) => check_record_sizes(std::slice::from_ref(&r.data), max_record_bytes),
        None => Ok(()),
    }
}

/// One input record's fate.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Slot {
    /// Written as the n-th record of this append.
    Write(u64),
    /// Not written; answered with the committing record's tag.
    Duplicate(String),
}

/// The decision on a keyed append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyedPlan {
    slots: Vec<Slot>,
    /// Indices (into the input) of the records to write, in order.
    writes: Vec<usize>,
}

impl KeyedPlan {
    /// The records to write, in order, each with its key to commit.
    pub(crate) fn written<'a>(
        &'a self,
        records: &'a [KeyedRecord],
    ) -> impl Iterator<Item = &'a KeyedRecord> + 'a {
        self.writes.iter().filter_map(|&i| records.get(i))
    }

    /// How many records are written.
    pub(crate) fn write_count(&self) -> u64 {
        self.writes.len() as u64
    }

    /// The answer once the writes committed, the n-th written record at `offset_of(n)`.
    pub(crate) fn outcomes(self, offset_of: impl Fn(u64) -> Offset) -> Vec<KeyedOutcome> {
        self.slots
            .into_iter()
            .map(|slot| match slot {
                Slot::Write(n) => KeyedOutcome::Appended {
                    offset: offset_of(n),
                },
                Slot::Duplicate(tag) => KeyedOutcome::Duplicate { tag },
            })
            .collect()
    }
}

/// Decides a keyed append: a record whose key `stored` holds live at `now_ms` is a duplicate
/// of it; a key repeated in `records` is a duplicate of its first occurrence; the rest are
/// written.
pub(crate) fn plan_keyed(
    records: &[KeyedRecord],
    stored: impl Fn(&str) -> Option<StoredKey>,
    now_ms: u64,
    window: Duration,
) -> KeyedPlan {
    let window = window_ms(window);
    // The tag each key answers with from its first occurrence in this call on.
    let mut first_tags: HashMap<&str, String> = HashMap::new();
    let mut slots = Vec::with_capacity(records.len());
    let mut writes = Vec::new();
    for (i, record) in records.iter().enumerate() {
        if let Some(tag) = first_tags.get(record.key.as_str()) {
            slots.push(Slot::Duplicate(tag.clone()));
            continue;
        }
        let tag = match stored(&record.key) {
            Some(key) if key_is_live(key.committed_ms, now_ms, window) => {
                slots.push(Slot::Duplicate(key.tag.clone()));
                key.tag
            }
            _ => {
                slots.push(Slot::Write(writes.len() as u64));
                writes.push(i);
                record.tag.clone()
            }
        };
        first_tags.insert(record.key.as_str(), tag);
    }
    KeyedPlan { slots, writes }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, tag: &str) -> KeyedRecord {
        KeyedRecord::new(key, tag, "x").expect("valid")
    }

    fn offset(n: u64) -> Offset {
        crate::rules::index_offset::encode(10 + n)
    }

    #[test]
    fn live_keys_and_repeats_are_duplicates_expired_keys_are_written_again() {
        let stored = |key: &str| match key {
            "live" => Some(StoredKey {
                tag: "old-live".into(),
                committed_ms: 5_000,
            }),
            "expired" => Some(StoredKey {
                tag: "old-expired".into(),
                committed_ms: 1_000,
            }),
            _ => None,
        };
        let records = [
            rec("new", "t1"),
            rec("live", "t2"),
            rec("expired", "t3"),
            rec("new", "t4"),
            rec("live", "t5"),
        ];
        // Window 4 s at 5.5 s: "live" (0.5 s old) holds, "expired" (4.5 s old) does not.
        let plan = plan_keyed(&records, stored, 5_500, Duration::from_secs(4));
        let written: Vec<&str> = plan.written(&records).map(|r| r.tag.as_str()).collect();
        assert_eq!(written, ["t1", "t3"]);
        assert_eq!(plan.write_count(), 2);
        assert_eq!(
            plan.outcomes(offset),
            vec![
                KeyedOutcome::Appended { offset: offset(0) },
                KeyedOutcome::Duplicate {
                    tag: "old-live".into()
                },
                KeyedOutcome::Appended { offset: offset(1) },
                KeyedOutcome::Duplicate { tag: "t1".into() },
                KeyedOutcome::Duplicate {
                    tag: "old-live".into()
                },
            ]
        );
    }

    #[test]
    fn the_window_edge_and_a_clock_going_backwards() {
        assert!(key_is_live(1_000, 1_999, 1_000));
        assert!(!key_is_live(1_000, 2_000, 1_000));
        assert!(key_is_live(5_000, 1_000, 1_000), "clock went backwards");
        assert!(
            !key_is_live(1_000, 1_000, 0),
            "a zero window remembers nothing"
        );
    }

    #[test]
    fn bad_keys_and_large_records_are_refused() {
        let empty = KeyedRecord {
            key: String::new(),
            tag: "t".into(),
            data: "x".into(),
        };
        assert!(matches!(
            validate_keyed(&[empty], 10),
            Err(StorageError::InvalidInput(_))
        ));
        let big = KeyedRecord::new("k", "t", vec![0u8; 11]).expect("valid");
        assert!(matches!(
            validate_keyed(&[big], 10),
            Err(StorageError::TooLarge { size: 11, .. })
        ));
    }
}
