//! Keyed appends on Redis: each dedup key is a string `<prefix>:k:<generation>:<key>` holding
//! `<committed_ms> <tag>` (the generation is unique per stream incarnation, so a re-created
//! stream starts without keys). The keys are read and the shared rules decide in Rust; the append's
//! compare-and-set script (`scripts::COMMIT`) then writes the records and their keys
//! together. Every commit bumps the stream's `ver`, so a caller on another node that committed
//! one of the keys meanwhile makes the script refuse, and the call re-reads and decides again.
//!
//! The window is judged on the storage's clock from `committed_ms`; Redis's own key expiry
//! (the window plus 60 s, in server time) only reclaims keys no window can match any more.

use std::collections::HashMap;
use std::time::Duration;

use courier_traits::storage::{KeyedOutcome, KeyedRecord, StorageError, StreamName};
use redis;

use super::RedisStore;
use crate::redis::cas::{CasRetry, contention, eval};
use crate::redis::errors::storage_error;
use crate::redis::meta::EXPIRY_GRACE_MS;
use crate::redis::scripts;
use crate::rules::{StoredKey, index_offset, plan_keyed, window_ms};

impl RedisStore {
    fn dedup_key(&self, generation: &str, key: &str) -> String {
        format!("{}:k:{generation}:{key}", self.config.key_prefix)
    }

    /// Applies a keyed append (records already validated).
    pub(super) async fn keyed_append(
        &self,
        name: &StreamName,
        records: Vec<KeyedRecord>,
        window: Duration,
    ) -> Result<Vec<KeyedOutcome>, StorageError> {
        let _serialised = self.writes.lock(name.as_str()).await;
        let mut distinct: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        let mut retry = CasRetry::new();
        loop {
            let meta = self.load_live(name).await?;
            if meta.row.closed {
                return Err(StorageError::Closed {
                    stream: name.clone(),
                    next_offset: index_offset::encode(meta.row.next_index),
                });
            }
            if records.is_empty() {
                return Ok(Vec::new());
            }
            let mut conn = self.conn().await?;
            let values: Vec<Option<String>> = redis::cmd("MGET")
                .arg(
                    distinct
                        .iter()
                        .map(|k| self.dedup_key(&meta.generation, k))
                        .collect::<Vec<_>>(),
                )
                .query_async(&mut conn)
                .await
                .map_err(|e| storage_error("mget", e))?;
            let stored: HashMap<&str, StoredKey> = distinct
                .iter()
                .zip(values)
                .filter_map(|(key, value)| Some((*key, decode_stored(&value?)?)))
                .collect();
            let now = self.now();
            let plan = plan_keyed(
                &records,
                |key| stored.get(key).cloned(),
                u64::try_from(now).unwrap_or(0),
                window,
            );
            let first = meta.row.next_index;
            if plan.write_count() == 0 {
                return Ok(plan.outcomes(|n| index_offset::encode(first + n)));
            }
            let written: Vec<&KeyedRecord> = plan.written(&records).collect();
            let mut keys = vec![
                self.meta_key(name.as_str()),
                self.data_key(name.as_str(), &meta.generation),
                self.producers_key(name.as_str(), &meta.generation),
                self.channel(),
            ];
            keys.extend(
                written
                    .iter()
                    .map(|r| self.dedup_key(&meta.generation, &r.key)),
            );
            let mut invocation = eval(scripts::COMMIT, &keys);
            invocation
                .arg(meta.cas_token())
                .arg(first)
                .arg(written.len());
            for record in &written {
                invocation.arg(&record.data[..]);
            }
            let fields = [
                ("next_index", (first + plan.write_count()).to_string()),
                ("last_access_ms", now.to_string()),
            ];
            invocation.arg(fields.len());
            for (field, value) in &fields {
                invocation.arg(*field).arg(value);
            }
            let key_px = i64::try_from(window_ms(window))
                .unwrap_or(i64::MAX)
                .saturating_add(EXPIRY_GRACE_MS);
            // No producer; then the notification, the stream's backstop, the keys' one.
            invocation
                .arg(0)
                .arg(name.as_str())
                .arg(meta.pexpire_ms(now))
                .arg(key_px);
            for record in &written {
                invocation.arg(format!("{now} {}", record.tag));
            }
            let committed: i64 = invocation
                .query_async(&mut conn)
                .await
                .map_err(|e| storage_error("keyed append", e))?;
            if committed == 1 {
                return Ok(plan.outcomes(|n| index_offset::encode(first + n)));
            }
            if !retry.again().await {
                return Err(contention(name));
            }
        }
    }
}

/// A dedup key's value, `<committed_ms> <tag>`.
fn decode_stored(value: &str) -> Option<StoredKey> {
    let (committed_ms, tag) = value.split_once(' ')?;
    Some(StoredKey {
        tag: tag.to_owned(),
        committed_ms: committed_ms.parse().ok()?,
    })
}
