//! The topics this node knows, and how their messages travel: the contract between the
//! producer side and the consumer side of the broker.
//!
//! # Catalog
//!
//! [`Catalog`] folds the events of the stream `broker/catalog` (JSON, one
//! [`CatalogEvent`] per record) into memory when it opens, so topics survive a restart. A new
//! topic is an appended `topic_created` event whose writer sequence is the event's index: two
//! nodes (or tasks) creating at once cannot both win; the loser folds the winner's event and
//! decides again. Its [`CatalogState`] is the [`TopicView`] discovery answers from
//! ([`Catalog::view`]). Other nodes' events are folded on [`Catalog::refresh`] (every create
//! refreshes first); tailing the stream with `wait` belongs to multi-node ownership (not built).
//!
//! # Per topic: [`TopicEntry`]
//!
//! Every topic has a [`Dispatch`] fixed at creation and one delivery path:
//!
//! - **Non-reliable** ([`TopicDelivery::Live`]): a [`LiveFanout`]. Publishing stamps
//!   `msg_id.topic_offset` with a dense in-memory counter (0, 1, 2… since this process
//!   started) and hands the message, in the producer's call, to every [`LiveSink`] attached
//!   with [`LiveFanout::attach`] (each subscription; its bounded consumer queues drop and count
//!   what does not fit). Nothing is stored; ack/nack are no-ops.
//! - **Reliable** ([`TopicDelivery::Log`]): the storage stream
//!   [`topic_log_stream`] = `broker/t/<ns>/<topic>`, created with [`topic_log_config`] before
//!   the topic's event is appended. Each record is a prost-encoded `StreamMessage`
//!   ([`decode_record`]) exactly as the producer sent it, plus `msg_id` =
//!   `{producer_id, topic_name, broker_addr (the URL of the node that wrote it), topic_offset}`
//!   where `topic_offset` is the record's dense index in the log (0, 1, 2…, no gaps).
//!   `request_id` is the producer's; set your own before delivering. Only the topic's
//!   [`TopicWriter`] appends.
//!
//! **Reading a log** (consumers): `storage.read(stream, from, limits)` with `from = None` for
//! the start or a storage `Offset` you saved; a record's
//! `offset` field is the position just before it, so a cursor saves
//! (`Record::offset` of the next undelivered record, its dense `topic_offset`). The tail for a
//! new subscription is `storage.head(stream).next_offset`. Learn of new records with
//! `storage.wait(stream, &after, timeout)`: it returns `Ready` as soon as a record lies past
//! `after`, also for appends made through other nodes of a shared storage.

mod dispatch;
pub mod events;
pub mod live;
pub mod log;

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use courier_impls::grpc::proto::danube::StreamMessage;
use courier_traits::error::{Classify, ErrorClass};
use courier_traits::storage::{
    AppendRequest, Offset, StorageError, StreamConfig, StreamName, StreamStorage,
};

use crate::directory::{Owner, TopicTable, TopicView};
use crate::topic::TopicName;
use crate::writer::{TopicWriter, WriteError};
pub use dispatch::Dispatch;
pub use events::CatalogEvent;
use events::DecodedEvent;
pub use live::{LiveFanout, LiveSink};
pub use log::{decode_record, encode_record, topic_log_config, topic_log_stream};

/// The stream of catalog events.
pub const CATALOG_STREAM: &str = "broker/catalog";

/// Why the catalog could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The topic exists with the other dispatch strategy.
    #[error("topic {topic} is {existing}; it cannot be used as {requested}")]
    DispatchMismatch {
        /// The topic.
        topic: TopicName,
        /// Its strategy.
        existing: Dispatch,
        /// The one asked for.
        requested: Dispatch,
    },
    /// A plain topic beside partitions of the same name, or a partition beside the plain topic.
    #[error("topic {topic} cannot be created: {existing} exists")]
    PartitionConflict {
        /// The topic asked for.
        topic: TopicName,
        /// The existing topic in the way (the plain topic or one of its partitions).
        existing: TopicName,
    },
    /// Other creators kept appending to the catalog first.
    #[error("the catalog kept changing while creating {topic}")]
    Contended {
        /// The topic asked for.
        topic: TopicName,
    },
    /// The storage failed.
    #[error("catalog storage: {0}")]
    Storage(#[from] StorageError),
    /// A record of `broker/catalog` is not an event (the catalog is not usable).
    #[error("record {index} of {CATALOG_STREAM} is corrupt: {reason}")]
    Corrupt {
        /// Its index in the stream.
        index: u64,
        /// Why it does not read.
        reason: String,
    },
}

impl Classify for CatalogError {
    fn class(&self) -> ErrorClass {
        match self {
            CatalogError::Storage(error) => error.class(),
            CatalogError::Contended { .. } => ErrorClass::TRANSIENT,
            _ => ErrorClass::Permanent,
        }
    }
}

/// How a topic's messages reach consumers.
#[derive(Debug)]
pub enum TopicDelivery {
    /// Non-reliable: live fan-out.
    Live(LiveFanout),
    /// Reliable: the topic's log and its writer.
    Log(TopicWriter),
}

/// One topic as this node holds it.
#[derive(Debug)]
pub struct TopicEntry {
    name: TopicName,
    dispatch: Dispatch,
    delivery: TopicDelivery,
}

impl TopicEntry {
    /// The topic's name.
    pub fn name(&self) -> &TopicName {
        &self.name
    }

    /// Its dispatch strategy.
    pub fn dispatch(&self) -> Dispatch {
        self.dispatch
    }

    /// Its delivery path.
    pub fn delivery(&self) -> &TopicDelivery {
        &self.delivery
    }

    /// The live fan-out, for a non-reliable topic.
    pub fn live(&self) -> Option<&LiveFanout> {
        match &self.delivery {
            TopicDelivery::Live(live) => Some(live),
            TopicDelivery::Log(_) => None,
        }
    }

    /// The log's stream, for a reliable topic.
    pub fn log_stream(&self) -> Option<&StreamName> {
        match &self.delivery {
            TopicDelivery::Live(_) => None,
            TopicDelivery::Log(writer) => Some(writer.stream()),
        }
    }

    /// Publishes `message` (its `msg_id` set) and returns its dense offset: once durable for a
    /// reliable topic, once handed to the receivers for a non-reliable one.
    ///
    /// Errors: [`WriteError`] (reliable topics only).
    pub async fn publish(&self, message: StreamMessage) -> Result<u64, WriteError> {
        match &self.delivery {
            TopicDelivery::Live(live) => Ok(live.publish(message)),
            TopicDelivery::Log(writer) => writer.append(message).await,
        }
    }

    /// Stops the topic's writer after the sends already queued (reliable topics).
    pub async fn stop(&self) {
        if let TopicDelivery::Log(writer) = &self.delivery {
            writer.stop().await;
        }
    }
}

/// The catalog folded into memory; discovery reads it as a [`TopicView`].
#[derive(Debug, Default)]
pub struct CatalogState {
    table: TopicTable,
    topics: BTreeMap<TopicName, Arc<TopicEntry>>,
    /// The position after the last folded event (`None` = nothing folded yet).
    position: Option<Offset>,
    /// Events folded: the index the next event gets.
    events: u64,
}

impl crate::folded_log::FoldedLog for CatalogState {
    fn position(&self) -> Option<&Offset> {
        self.position.as_ref()
    }
    fn set_position(&mut self, at: Offset) {
        self.position = Some(at);
    }
    fn count_event(&mut self) {
        self.events += 1;
    }
}

impl CatalogState {
    /// The topic `name`, if it exists.
    pub fn topic(&self, name: &TopicName) -> Option<Arc<TopicEntry>> {
        self.topics.get(name).cloned()
    }

    /// Every topic, in name order.
    pub fn topics(&self) -> impl Iterator<Item = &Arc<TopicEntry>> {
        self.topics.values()
    }

    /// The existing topic that keeps `name` from being created beside it: its plain topic if
    /// `name` is a partition, else any partition of `name`.
    fn partition_conflict(&self, name: &TopicName) -> Option<TopicName> {
        if let Some((base, _)) = name.as_partition()
            && self.topics.contains_key(&base)
        {
            return Some(base);
        }
        let index = self.table.partitions(name).into_iter().next()?;
        name.partition(index).ok()
    }
}

impl TopicView for CatalogState {
    fn owner(&self, topic: &TopicName) -> Option<Owner> {
        self.table.owner(topic)
    }

    fn partitions(&self, topic: &TopicName) -> Vec<u32> {
        self.table.partitions(topic)
    }
}

/// The topics this node knows, folded from `broker/catalog` (see the [module docs](self)).
pub struct Catalog {
    storage: Arc<dyn StreamStorage>,
    stream: StreamName,
    state: Arc<RwLock<CatalogState>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

/// How many times one create re-folds the catalog after losing the race before giving up.
const MAX_CREATE_ATTEMPTS: usize = 16;

impl Catalog {
    /// Opens the catalog on `storage`: creates `broker/catalog` if needed and folds every
    /// event in it (starting a writer for each reliable topic). Call within a tokio runtime.
    ///
    /// Errors: [`CatalogError::Storage`], [`CatalogError::Corrupt`].
    pub async fn open(storage: Arc<dyn StreamStorage>) -> Result<Catalog, CatalogError> {
        let stream = StreamName::new(CATALOG_STREAM)
            .unwrap_or_else(|_| unreachable!("a constant, valid stream name"));
        storage
            .create(
                &stream,
                StreamConfig::with_content_type("application/json"),
                Vec::new(),
            )
            .await?;
        let catalog = Catalog {
            storage,
            stream,
            state: Arc::new(RwLock::new(CatalogState::default())),
        };
        catalog.refresh().await?;
        Ok(catalog)
    }

    /// The folded state, shared: what [`DiscoveryService`](crate::discovery::DiscoveryService)
    /// is built over. Read it under a short lock, never across an `.await`.
    pub fn view(&self) -> Arc<RwLock<CatalogState>> {
        self.state.clone()
    }

    /// The storage the catalog and the topic logs live in.
    pub fn storage(&self) -> &Arc<dyn StreamStorage> {
        &self.storage
    }

    /// The topic `name`, if this node knows it.
    pub fn topic(&self, name: &TopicName) -> Option<Arc<TopicEntry>> {
        self.read().topic(name)
    }

    /// Every known topic.
    pub fn topics(&self) -> Vec<Arc<TopicEntry>> {
        self.read().topics().cloned().collect()
    }

    /// The topic `name` with `dispatch`, created if it does not exist (spec §2: the first
    /// producer creates it).
    ///
    /// Errors: [`CatalogError::DispatchMismatch`] if it exists with the other strategy,
    /// [`CatalogError::PartitionConflict`] for a plain topic beside its partitions (or the
    /// reverse), [`CatalogError::Storage`] / [`CatalogError::Contended`] (retryable when the
    /// storage error is).
    pub async fn ensure_topic(
        &self,
        name: &TopicName,
        dispatch: Dispatch,
    ) -> Result<Arc<TopicEntry>, CatalogError> {
        if let Some(found) = self.existing(name, dispatch)? {
            return Ok(found);
        }
        for _ in 0..MAX_CREATE_ATTEMPTS {
            self.refresh().await?;
            if let Some(found) = self.existing(name, dispatch)? {
                return Ok(found);
            }
            if dispatch == Dispatch::Reliable {
                let log = topic_log_stream(name);
                self.storage
                    .create(&log, topic_log_config(), Vec::new())
                    .await?;
            }
            let index = self.read().events;
            let event = CatalogEvent::TopicCreated {
                topic: name.to_string(),
                dispatch,
            };
            let request =
                AppendRequest::record(event.encode()).with_writer_seq(log::writer_seq(index));
            match self.storage.append(&self.stream, request).await {
                Ok(_) | Err(StorageError::WriterSeqRegression { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        self.refresh().await?;
        self.existing(name, dispatch)?
            .ok_or_else(|| CatalogError::Contended {
                topic: name.clone(),
            })
    }

    /// The topic if it exists with `dispatch`; an error if creating it would conflict.
    fn existing(
        &self,
        name: &TopicName,
        dispatch: Dispatch,
    ) -> Result<Option<Arc<TopicEntry>>, CatalogError> {
        let state = self.read();
        if let Some(found) = state.topic(name) {
            if found.dispatch != dispatch {
                return Err(CatalogError::DispatchMismatch {
                    topic: name.clone(),
                    existing: found.dispatch,
                    requested: dispatch,
                });
            }
            return Ok(Some(found));
        }
        match state.partition_conflict(name) {
            Some(existing) => Err(CatalogError::PartitionConflict {
                topic: name.clone(),
                existing,
            }),
            None => Ok(None),
        }
    }

    /// Folds the events appended since the last fold (by this node or any other).
    ///
    /// Errors: [`CatalogError::Storage`], [`CatalogError::Corrupt`].
    pub async fn refresh(&self) -> Result<(), CatalogError> {
        crate::folded_log::refresh(
            &*self.storage,
            &self.stream,
            &self.state,
            |state, record| self.fold(state, record),
        )
        .await
    }

    fn fold(&self, state: &mut CatalogState, record: &[u8]) -> Result<(), CatalogError> {
        let index = state.events;
        match CatalogEvent::decode(record) {
            DecodedEvent::Known(CatalogEvent::TopicCreated { topic, dispatch }) => {
                let name = match TopicName::new(&topic) {
                    Ok(name) => name,
                    Err(error) => {
                        tracing::warn!(index, %error, "catalog: skipping a topic with a bad name");
                        return Ok(());
                    }
                };
                // The first event for a name wins; a racing duplicate changes nothing.
                if state.topics.contains_key(&name) {
                    return Ok(());
                }
                let delivery = match dispatch {
                    Dispatch::NonReliable => TopicDelivery::Live(LiveFanout::new()),
                    Dispatch::Reliable => TopicDelivery::Log(TopicWriter::start(
                        self.storage.clone(),
                        topic_log_stream(&name),
                    )),
                };
                // One node serves every topic: the decision point for ownership claims.
                state.table.insert(name.clone(), Owner::Here);
                state.topics.insert(
                    name.clone(),
                    Arc::new(TopicEntry {
                        name,
                        dispatch,
                        delivery,
                    }),
                );
                Ok(())
            }
            DecodedEvent::Unknown(kind) => {
                tracing::debug!(
                    index,
                    kind,
                    "catalog: skipping an event kind this build does not know"
                );
                Ok(())
            }
            DecodedEvent::Corrupt(reason) => Err(CatalogError::Corrupt { index, reason }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, CatalogState> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops every reliable topic's writer after the sends already queued.
    pub async fn stop(&self) {
        for topic in self.topics() {
            topic.stop().await;
        }
    }
}
