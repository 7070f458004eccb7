//! A stream's meta hash (`<prefix>:m:<name>`): its stored row plus the compare-and-set version,
//! the generation of its data keys and its place in a fork chain; and the key-expiry backstop.

use std::collections::HashMap;

use courier_traits::storage::ProducerStamp;

use crate::sql_model::StreamRow;

/// Extra lifetime given to TTL keys beyond the window, so Redis never drops a live stream.
pub(super) const EXPIRY_GRACE_MS: i64 = 60_000;

/// A stream's meta hash, decoded.
#[derive(Clone)]
pub(super) struct Meta {
    pub(super) row: StreamRow,
    pub(super) ver: String,
    pub(super) generation: String,
    pub(super) parent: Option<String>,
    pub(super) live_forks: i64,
}

impl Meta {
    pub(super) fn decode(fields: HashMap<String, String>) -> Option<Meta> {
        let num = |k: &str| fields.get(k).and_then(|v| v.parse::<i64>().ok());
        let closed_by = fields
            .get("closed_by")
            .filter(|v| !v.is_empty())
            .and_then(|v| {
                let mut parts = v.splitn(3, ' ');
                let epoch = parts.next()?.parse().ok()?;
                let seq = parts.next()?.parse().ok()?;
                Some(ProducerStamp {
                    id: parts.next()?.to_owned(),
                    epoch,
                    seq,
                })
            });
        Some(Meta {
            row: StreamRow {
                content_type: fields.get("content_type")?.clone(),
                expiry_kind: num("expiry_kind")?,
                expiry_ms: num("expiry_ms")?,
                requested: fields.get("requested")?.clone(),
                closed: num("closed")? != 0,
                closed_by,
                writer_seq: fields.get("writer_seq").cloned(),
                next_index: num("next_index")? as u64,
                last_access_ms: num("last_access_ms")?,
                soft_deleted: num("soft_deleted").unwrap_or(0) != 0,
            },
            ver: fields.get("ver")?.clone(),
            generation: fields.get("gen")?.clone(),
            parent: fields.get("parent").filter(|p| !p.is_empty()).cloned(),
            live_forks: num("live_forks").unwrap_or(0),
        })
    }

    /// What the commit script compares before it writes: the version and the generation.
    pub(super) fn cas_token(&self) -> String {
        format!("{}:{}", self.ver, self.generation)
    }

    /// The meta after the commit script, given this one, wrote `row` (its `ver` goes up by
    /// one); `None` if `ver` is not a number (then the next write reads the meta again).
    pub(super) fn after_commit(&self, row: StreamRow) -> Option<Meta> {
        let ver = self.ver.parse::<i64>().ok()?.checked_add(1)?;
        Some(Meta {
            row,
            ver: ver.to_string(),
            generation: self.generation.clone(),
            parent: self.parent.clone(),
            live_forks: self.live_forks,
        })
    }

    /// Key lifetime for the expiry backstop (0 = none): only TTL/absolute streams without forks.
    pub(super) fn pexpire_ms(&self, now: i64) -> i64 {
        if self.live_forks > 0 {
            return 0;
        }
        expiry_backstop(self.row.expiry_kind, self.row.expiry_ms, now)
    }
}

pub(super) fn expiry_backstop(kind: i64, ms: i64, now: i64) -> i64 {
    match kind {
        1 => ms + EXPIRY_GRACE_MS,
        2 => (ms - now).max(0) + EXPIRY_GRACE_MS,
        _ => 0,
    }
}
