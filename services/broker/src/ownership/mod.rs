//! Which node serves a topic when several share one storage (spec §3 "Ownership").
//!
//! - A **claim** on a topic is a record of `broker/own/<ns>/<topic>` ([`Claim`]: epoch, node,
//!   its URLs) appended with the epoch as writer sequence: the storage accepts one append per
//!   epoch, so two nodes claiming at once get one winner and the loser reads the winner's
//!   claim.
//! - **Liveness**: each node keeps `broker/nodes/<node>`, created with a TTL
//!   ([`OwnershipConfig::lease`], 15 s) and renewed by the node's own read every
//!   [`OwnershipConfig::renew_every`] (5 s). Other nodes only `head` it, which does not reset
//!   the TTL: a node that stops renewing (killed, paused, cut off) is gone after the lease.
//! - [`Ownership::resolve`]: the newest claim names this node → served here; names a live
//!   node → that node; no claim, or its node's liveness stream is gone → claim with the next
//!   epoch.
//! - The lease task re-reads the claims of the topics this node serves at every renewal: a
//!   newer claim by another node means this node stopped owning the topic
//!   ([`Ownership::holds`] turns false: health answers `CLOSE`, sends and creates answer
//!   `Unavailable`).
//!
//! A node restarted at the same address keeps its id ([`node_id_for`]) and so its claims.
//! Between a paused owner waking up and its next renewal, both it and the new owner may take
//! sends for the topic; the log's writer sequence still keeps offsets dense and in one order.
//!
//! The gRPC side ([`gate`]): discovery answers `Redirect` for topics owned elsewhere, and
//! CreateProducer, SendMessage, Subscribe, ReceiveMessages, Ack and Nack answer `Unavailable`.
//! A node that stops serving a topic tells [`Ownership::on_lost`]'s listeners (the server
//! drops that topic's subscriptions, so a later claim reloads their cursors from storage).

mod claim;
pub mod gate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use courier_traits::error::{Classify, ErrorClass, InvalidInput};
use courier_traits::storage::{
    AppendRequest, Expiry, ReadLimits, StorageError, StreamConfig, StreamName, StreamStorage,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use claim::{Claim, claim_stream, liveness_stream, node_id_for};

use crate::directory::{NodeUrls, Owner};
use crate::topic::TopicName;

/// How many times one resolve re-reads the claims after losing a claim race.
const MAX_CLAIM_ATTEMPTS: usize = 8;

/// A node's identity and lease timing; the defaults are the spec's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnershipConfig {
    /// The node's id: its liveness stream is `broker/nodes/<node>`. Keep it across restarts.
    pub node: String,
    /// The liveness stream's TTL: how long after its last renewal a node counts as gone.
    pub lease: Duration,
    /// How often the node renews its liveness and re-reads the claims of its topics.
    pub renew_every: Duration,
}

impl OwnershipConfig {
    /// The defaults (lease 15 s, renewal every 5 s) for the node reached at `here`, its id
    /// derived from its broker URL.
    pub fn new(here: &NodeUrls) -> OwnershipConfig {
        OwnershipConfig {
            node: node_id_for(&here.broker_url),
            lease: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }
    }
}

/// Why ownership could not be decided.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OwnershipError {
    /// The storage failed (retryable when it is unavailable).
    #[error("ownership: {0}")]
    Storage(#[from] StorageError),
    /// A claim record is not a claim.
    #[error("ownership: claim {index} of {stream} is corrupt: {reason}")]
    Corrupt {
        /// The claim stream.
        stream: StreamName,
        /// The record's index.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// Other nodes kept winning the claim races.
    #[error("ownership: topic {topic} still contended after {MAX_CLAIM_ATTEMPTS} claims")]
    Contended {
        /// The topic.
        topic: TopicName,
    },
    /// The configured node id does not make a stream name.
    #[error(transparent)]
    InvalidNode(#[from] InvalidInput),
}

impl Classify for OwnershipError {
    fn class(&self) -> ErrorClass {
        match self {
            OwnershipError::Storage(error) => error.class(),
            OwnershipError::Contended { .. } => ErrorClass::TRANSIENT,
            OwnershipError::Corrupt { .. } | OwnershipError::InvalidNode(_) => {
                ErrorClass::Permanent
            }
        }
    }
}

/// This node's view of who owns which topic (see the [module docs](self)).
pub struct Ownership {
    storage: Arc<dyn StreamStorage>,
    here: NodeUrls,
    config: OwnershipConfig,
    liveness: StreamName,
    /// The topics this node serves, with the epoch of its claim.
    held: Mutex<HashMap<TopicName, u64>>,
    stop: CancellationToken,
    lease_task: Mutex<Option<JoinHandle<()>>>,
    /// Told each topic this node stops serving (or claims anew, dropping any state it kept).
    on_lost: Mutex<Vec<LostListener>>,
}

/// What [`Ownership::on_lost`] calls with a topic this node no longer serves.
pub type LostListener = Box<dyn Fn(&TopicName) + Send + Sync>;

impl std::fmt::Debug for Ownership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ownership")
            .field("node", &self.config.node)
            .finish_non_exhaustive()
    }
}

impl Ownership {
    /// Announces the node (creates its liveness stream) and starts the lease task, which
    /// [`Ownership::stop`] ends. Call within a tokio runtime.
    ///
    /// Errors: [`OwnershipError`].
    pub async fn start(
        storage: Arc<dyn StreamStorage>,
        here: NodeUrls,
        config: OwnershipConfig,
    ) -> Result<Arc<Ownership>, OwnershipError> {
        let liveness = liveness_stream(&config.node)?;
        let ownership = Arc::new(Ownership {
            storage,
            here,
            config,
            liveness,
            held: Mutex::new(HashMap::new()),
            stop: CancellationToken::new(),
            lease_task: Mutex::new(None),
            on_lost: Mutex::new(Vec::new()),
        });
        ownership.renew().await?;
        let task = tokio::spawn(lease_loop(
            Arc::downgrade(&ownership),
            ownership.stop.clone(),
        ));
        *ownership
            .lease_task
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(task);
        Ok(ownership)
    }

    /// The node's id.
    pub fn node(&self) -> &str {
        &self.config.node
    }

    /// Calls `listener` with every topic this node stops serving (a newer claim by another
    /// node), and with every topic it claims anew (any state from an earlier claim is stale:
    /// another node may have served the topic in between). Called without awaiting; keep it
    /// short.
    pub fn on_lost(&self, listener: LostListener) {
        self.on_lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(listener);
    }

    fn lost(&self, topic: &TopicName) {
        let listeners = self.on_lost.lock().unwrap_or_else(PoisonError::into_inner);
        for listener in listeners.iter() {
            listener(topic);
        }
    }

    /// Whether this node serves `topic` now (claimed by it, and no newer claim seen since).
    pub fn holds(&self, topic: &TopicName) -> bool {
        self.held().contains_key(topic)
    }

    /// Who serves `topic`, claiming it for this node if nobody live does.
    ///
    /// Errors: [`OwnershipError`].
    pub async fn resolve(&self, topic: &TopicName) -> Result<Owner, OwnershipError> {
        let stream = claim_stream(topic);
        self.storage
            .create(
                &stream,
                StreamConfig::with_content_type("application/json"),
                Vec::new(),
            )
            .await?;
        for _ in 0..MAX_CLAIM_ATTEMPTS {
            let latest = self.latest_claim(&stream).await?;
            if let Some(claim) = &latest {
                if claim.node == self.config.node {
                    self.held().insert(topic.clone(), claim.epoch);
                    return Ok(Owner::Here);
                }
                if self.is_alive(&claim.node).await? {
                    let was_held = self.held().remove(topic).is_some();
                    if was_held {
                        self.lost(topic);
                    }
                    return Ok(Owner::Node(claim.urls()));
                }
            }
            let claim = Claim {
                epoch: latest.map_or(1, |claim| claim.epoch + 1),
                node: self.config.node.clone(),
                broker_url: self.here.broker_url.clone(),
                connect_url: self.here.connect_url.clone(),
            };
            let record = serde_json::to_vec(&claim).unwrap_or_else(|_| {
                unreachable!("a claim of strings and integers always serialises")
            });
            let append = AppendRequest::record(record).with_writer_seq(claim.writer_seq());
            match self.storage.append(&stream, append).await {
                Ok(_) => {
                    tracing::info!(%topic, epoch = claim.epoch, node = claim.node, "topic claimed");
                    // Whatever this node kept of the topic predates the claims in between.
                    self.lost(topic);
                    self.held().insert(topic.clone(), claim.epoch);
                    return Ok(Owner::Here);
                }
                // Another node won this epoch: read its claim and decide again.
                Err(StorageError::WriterSeqRegression { .. }) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(OwnershipError::Contended {
            topic: topic.clone(),
        })
    }

    /// Renews this node's liveness (re-creating it if it expired), then drops every held
    /// topic whose newest claim is another node's. The lease task calls it every
    /// [`OwnershipConfig::renew_every`].
    ///
    /// Errors: [`OwnershipError`] (liveness not renewed; or the last claim stream that could
    /// not be read, its topic staying held, after every other topic was checked).
    pub async fn renew(&self) -> Result<(), OwnershipError> {
        match self
            .storage
            .read(&self.liveness, None, ReadLimits::default())
            .await
        {
            Ok(_) => {}
            Err(StorageError::NotFound { .. }) => {
                tracing::warn!(
                    node = self.config.node,
                    "liveness expired: announcing again"
                );
                self.storage
                    .create(
                        &self.liveness,
                        StreamConfig {
                            content_type: Some("application/json".to_owned()),
                            expiry: Expiry::Ttl(self.config.lease),
                            ..StreamConfig::default()
                        },
                        Vec::new(),
                    )
                    .await?;
            }
            Err(error) => return Err(error.into()),
        }
        let held: Vec<(TopicName, u64)> = self
            .held()
            .iter()
            .map(|(topic, epoch)| (topic.clone(), *epoch))
            .collect();
        let mut failed = None;
        for (topic, epoch) in held {
            let latest = match self.latest_claim(&claim_stream(&topic)).await {
                Ok(latest) => latest,
                Err(error) => {
                    // One unreadable claim stream must not keep the later topics unchecked.
                    tracing::warn!(%topic, %error, "could not read the topic's claims; still serving it");
                    failed = Some(error);
                    continue;
                }
            };
            if let Some(claim) = latest
                && claim.node != self.config.node
                && claim.epoch > epoch
            {
                tracing::warn!(%topic, epoch = claim.epoch, owner = claim.node, "topic claimed by another node: no longer serving it");
                self.held().remove(&topic);
                self.lost(&topic);
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Stops the lease task and withdraws the node's liveness, so that other nodes may claim
    /// its topics at once instead of after the lease.
    pub async fn stop(&self) {
        self.stop.cancel();
        let task = self
            .lease_task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
        self.held().clear();
        if let Err(error) = self.storage.delete(&self.liveness).await {
            tracing::warn!(%error, "could not withdraw this node's liveness");
        }
    }

    async fn is_alive(&self, node: &str) -> Result<bool, OwnershipError> {
        let Ok(stream) = liveness_stream(node) else {
            // A claim naming a node that cannot have a liveness stream is nobody's.
            return Ok(false);
        };
        match self.storage.head(&stream).await {
            Ok(_) => Ok(true),
            Err(StorageError::NotFound { .. } | StorageError::Gone { .. }) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    async fn latest_claim(&self, stream: &StreamName) -> Result<Option<Claim>, OwnershipError> {
        let mut from = None;
        let mut latest = None;
        let mut index = 0;
        loop {
            let batch = match self
                .storage
                .read(stream, from.clone(), ReadLimits::default())
                .await
            {
                Ok(batch) => batch,
                Err(StorageError::NotFound { .. }) => return Ok(None),
                Err(error) => return Err(error.into()),
            };
            if let Some(record) = batch.records.last() {
                index += batch.records.len();
                let claim = serde_json::from_slice::<Claim>(&record.data).map_err(|error| {
                    OwnershipError::Corrupt {
                        stream: stream.clone(),
                        index: index - 1,
                        reason: error.to_string(),
                    }
                })?;
                latest = Some(claim);
            }
            if batch.up_to_date || batch.records.is_empty() {
                return Ok(latest);
            }
            from = Some(batch.next_offset);
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<TopicName, u64>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Renews until `stop`; holds only a weak reference so a dropped [`Ownership`] ends it.
async fn lease_loop(ownership: std::sync::Weak<Ownership>, stop: CancellationToken) {
    let Some(every) = ownership.upgrade().map(|o| o.config.renew_every) else {
        return;
    };
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let Some(ownership) = ownership.upgrade() else {
            return;
        };
        if let Err(error) = ownership.renew().await {
            tracing::warn!(%error, "ownership renewal failed; retrying at the next tick");
        }
    }
}
