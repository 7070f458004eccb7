//! The meta of the streams this process appended to last, so the next batch of appends to a
//! stream goes to Redis as one round trip (the commit script) instead of two (read the meta,
//! then commit).
//!
//! A cached meta can be stale (another node appended, a delete, a fork, a keyed append, or a
//! read that refreshed a TTL). That is safe for a batch that writes because the commit script
//! is a compare-and-set on the meta's version *and* generation: a stale meta fails it, writes
//! nothing, and the writer reads the meta again. A batch that writes nothing (every append
//! refused or a duplicate) has no such check, so its answers are never given from a cached
//! meta: the writer reads the meta and decides again. A meta is taken out while its stream's writer uses it and put back
//! only after a commit that succeeded, so one that failed in an unknown way is never reused.
//! A read's refresh of `last_access_ms` does not change the version; a cached meta only ever
//! has an older `last_access_ms` than the stored one, so it can make a live TTL stream look
//! expired (then the writer reads the meta again) but never an expired one look live.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::meta::Meta;

/// Streams remembered at most; past it the cache starts again empty (a stream not cached
/// costs one extra round trip, nothing else).
const CAPACITY: usize = 4096;

#[derive(Default)]
pub(super) struct MetaCache {
    metas: Mutex<HashMap<String, Meta>>,
}

impl MetaCache {
    /// The meta this process last committed for `stream`, taken out of the cache.
    pub(super) fn take(&self, stream: &str) -> Option<Meta> {
        self.metas
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(stream)
    }

    /// Remembers `meta` as what `stream`'s meta is after this process's commit.
    pub(super) fn put(&self, stream: &str, meta: Meta) {
        let mut metas = self.metas.lock().unwrap_or_else(PoisonError::into_inner);
        if metas.len() >= CAPACITY && !metas.contains_key(stream) {
            metas.clear();
        }
        metas.insert(stream.to_owned(), meta);
    }
}
