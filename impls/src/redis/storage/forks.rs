//! Fork chains on Redis: the records a fork inherits, and deleting up a chain, as the shared
//! rules decide ([`plan_fork`], [`RemoveChain`]); each delete step is one compare-and-set
//! script (`scripts::REMOVE`).

use bytes::Bytes;
use courier_traits::storage::{ForkFrom, StorageError, StreamName};

use super::RedisStore;
use crate::redis::cas::{CasRetry, contention, eval};
use crate::redis::errors::storage_error;
use crate::redis::meta::Meta;
use crate::redis::scripts;
use crate::rules::{ByteCut, ChainLink, Removal, RemoveChain, plan_fork};

impl RedisStore {
    /// Deletes `name` (soft while forks live), releasing fork sources up the chain as
    /// [`RemoveChain`] decides; each step is one compare-and-set script.
    /// `only_if_expired`: do nothing unless the stream has expired (reaping).
    pub(super) async fn remove(
        &self,
        name: &StreamName,
        only_if_expired: bool,
    ) -> Result<(), StorageError> {
        // This process's own next append need not find out by a failed compare-and-set.
        drop(self.metas.take(name.as_str()));
        let mut chain = RemoveChain::new(name);
        let mut first = true;
        while let Some(current) = chain.next() {
            let mut retry = CasRetry::new();
            loop {
                let meta = self.load(current.as_str()).await?;
                if first
                    && only_if_expired
                    && !meta
                        .as_ref()
                        .is_some_and(|m| !m.row.soft_deleted && m.row.is_expired(self.now()))
                {
                    return Ok(());
                }
                let Some(meta) = meta else {
                    return Ok(());
                };
                let parent = meta.parent.as_deref().and_then(|p| StreamName::new(p).ok());
                let (mode, parent) = match chain.decide(Some(ChainLink {
                    live_forks: meta.live_forks,
                    parent,
                })) {
                    Some(Removal::Soft) => ("soft", None),
                    Some(Removal::Hard { parent: None }) => ("hard", None),
                    Some(Removal::Hard {
                        parent: Some(parent),
                    }) => ("hard_fork", Some(parent)),
                    None => return Ok(()),
                };
                let keys = [
                    self.meta_key(current.as_str()),
                    self.data_key(current.as_str(), &meta.generation),
                    self.producers_key(current.as_str(), &meta.generation),
                    self.meta_key(parent.as_ref().unwrap_or(&current).as_str()),
                    self.channel(),
                ];
                let mut conn = self.conn().await?;
                let outcome: Vec<i64> = eval(scripts::REMOVE, &keys)
                    .arg(&meta.ver)
                    .arg(mode)
                    .arg(current.as_str())
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| storage_error("remove", e))?;
                match (outcome.as_slice(), &parent) {
                    ([0], _) if retry.again().await => continue,
                    ([0], _) => return Err(contention(&current)),
                    ([2, soft_deleted, live_forks], Some(parent)) => {
                        chain.released(parent, *soft_deleted != 0, *live_forks);
                    }
                    _ => {}
                }
                break;
            }
            first = false;
        }
        Ok(())
    }

    /// The records a fork inherits, read from the source (as [`plan_fork`] decides).
    pub(super) async fn fork_prefix(
        &self,
        source: &StreamName,
        meta: &Meta,
        spec: &ForkFrom,
    ) -> Result<Vec<Bytes>, StorageError> {
        let plan = plan_fork(source, meta.row.next_index, spec)?;
        let data_key = self.data_key(source.as_str(), &meta.generation);
        let mut records = self.range(&data_key, 0, plan.whole).await?;
        if let Some(wanted) = plan.bytes {
            let mut cut = ByteCut::new(wanted);
            for record in self
                .range(&data_key, plan.whole, meta.row.next_index)
                .await?
            {
                if !cut.wants_more() {
                    break;
                }
                cut.push(record);
            }
            records.extend(cut.finish()?);
        }
        Ok(records)
    }
}
