//! What a topic bound to a schema subject asks of its producers and messages (spec §4).
//!
//! - CreateProducer with a schema reference: the subject must have a live version
//!   (`FailedPrecondition`), the topic is bound to it unless bound already, and bound to
//!   another subject is `FailedPrecondition` (an admin rebinds with ConfigureTopicSchema). A
//!   pinned version must exist, a minimum version must not exceed the latest
//!   (`FailedPrecondition`).
//! - SendMessage on a bound topic, policy `enforce`: `schema_id` must be the subject's and
//!   `schema_version` a live version of it, and with payload validation the payload must
//!   match that version (JSON Schema, Avro), else `InvalidArgument`. Policy `warn`: the same
//!   checks log and count ([`TopicSchemas::warnings`]); policy `none`: nothing.
//!
//! Sends read the registry as folded on this node, folded again at most [`REFRESH_EVERY`]
//! after the last fold, so a topic configured through another node takes effect here within
//! that time (at once for a message that fails the stale settings: it is checked again after
//! a fold).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use courier_impls::grpc::proto::danube::schema_reference::VersionRef;
use courier_impls::grpc::proto::danube::{SchemaReference, StreamMessage};
use courier_impls::metrics::Counter;
use tonic::Status;

use super::error::RegistryError;
use super::state::TopicSchema;
use super::store::SchemaRegistry;
use super::types::ValidationPolicy;
use crate::topic::TopicName;

/// How stale the registry a send is checked against may be.
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// The producer side's schema checks over a [`SchemaRegistry`].
#[derive(Debug)]
pub struct TopicSchemas {
    registry: Arc<SchemaRegistry>,
    warnings: Arc<Counter>,
    /// When this was made: the origin of `folded_at`.
    origin: Instant,
    /// Milliseconds after `origin` of the last fold a send asked for.
    folded_at: AtomicU64,
}

impl TopicSchemas {
    /// The checks over `registry`, counting `warn` mismatches in `warnings` (the broker's
    /// `courier_broker_schema_warnings_total`).
    pub fn new(registry: Arc<SchemaRegistry>, warnings: Arc<Counter>) -> TopicSchemas {
        TopicSchemas {
            registry,
            warnings,
            origin: Instant::now(),
            folded_at: AtomicU64::new(0),
        }
    }

    /// The registry.
    pub fn registry(&self) -> &Arc<SchemaRegistry> {
        &self.registry
    }

    /// Messages that failed a check under the `warn` policy and were kept.
    pub fn warnings(&self) -> u64 {
        self.warnings.get()
    }

    /// CreateProducer's check: binds `topic` to the reference's subject (see the
    /// [module docs](self)).
    ///
    /// Errors: `InvalidArgument` for an empty subject, `FailedPrecondition` as above.
    pub async fn bind_producer(
        &self,
        topic: &TopicName,
        reference: &SchemaReference,
    ) -> Result<(), Status> {
        let bound = self
            .registry
            .bind_topic(schema_topic(topic).as_str(), &reference.subject)
            .await?;
        let state = self.registry.read();
        let Some(subject) = state.subject(&bound.subject) else {
            return Err(RegistryError::precondition(format!(
                "schema subject {:?} is not registered",
                bound.subject
            ))
            .into());
        };
        let latest = subject.latest().map_or(0, |latest| latest.version);
        match reference.version_ref {
            Some(VersionRef::PinnedVersion(version)) if subject.version(version).is_none() => {
                Err(RegistryError::precondition(format!(
                    "pinned version {version} of schema subject {:?} does not exist (latest is {latest})",
                    subject.name
                ))
                .into())
            }
            Some(VersionRef::MinVersion(minimum)) if latest < minimum => {
                Err(RegistryError::precondition(format!(
                    "schema subject {:?} has no version >= {minimum} (latest is {latest})",
                    subject.name
                ))
                .into())
            }
            _ => Ok(()),
        }
    }

    /// SendMessage's check on `topic` (see the [module docs](self)).
    ///
    /// Errors: `InvalidArgument` under `enforce`.
    pub async fn check_message(
        &self,
        topic: &TopicName,
        message: &StreamMessage,
    ) -> Result<(), Status> {
        let now = self.origin.elapsed().as_millis() as u64;
        let last = self.folded_at.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= REFRESH_EVERY.as_millis() as u64
            && self
                .folded_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.registry.refresh().await?;
        }
        let schema_topic = schema_topic(topic);
        let settings = || self.registry.read().topic(schema_topic.as_str()).cloned();
        let Some(mut config) = settings() else {
            return Ok(());
        };
        if config.policy == ValidationPolicy::None {
            return Ok(());
        }
        let mut problem = self.problem(&config, message);
        if problem.is_some() {
            // The version, or new settings, may have come through another node since the
            // last fold.
            self.registry.refresh().await?;
            let Some(fresh) = settings() else {
                return Ok(());
            };
            config = fresh;
            if config.policy == ValidationPolicy::None {
                return Ok(());
            }
            problem = self.problem(&config, message);
        }
        let Some(problem) = problem else {
            return Ok(());
        };
        match config.policy {
            ValidationPolicy::Enforce => Err(Status::invalid_argument(format!(
                "topic {topic} (schema subject {:?}, policy enforce): {problem}",
                config.subject
            ))),
            _ => {
                self.warnings.inc();
                tracing::warn!(%topic, subject = config.subject, %problem, "message does not match the topic's schema (policy warn: kept)");
                Ok(())
            }
        }
    }

    /// What is wrong with `message` for a topic configured as `config`, if anything.
    fn problem(&self, config: &TopicSchema, message: &StreamMessage) -> Option<String> {
        let schema_id = {
            let state = self.registry.read();
            let Some(subject) = state.subject(&config.subject) else {
                return Some(format!(
                    "schema subject {:?} does not exist",
                    config.subject
                ));
            };
            let Some(schema_id) = message.schema_id else {
                return Some(format!(
                    "the message has no schema_id (subject {:?} is schema id {})",
                    subject.name, subject.schema_id
                ));
            };
            if schema_id != subject.schema_id {
                return Some(format!(
                    "schema_id {schema_id} is not subject {:?}'s ({})",
                    subject.name, subject.schema_id
                ));
            }
            let Some(version) = message.schema_version else {
                return Some("the message has no schema_version".to_owned());
            };
            if subject.version(version).is_none() {
                return Some(format!(
                    "schema_version {version} of subject {:?} does not exist",
                    subject.name
                ));
            }
            schema_id
        };
        if !config.payload_validation {
            return None;
        }
        let version = message.schema_version?;
        let compiled = self.registry.compiled(schema_id, version)?;
        compiled
            .validate_payload(&message.payload)
            .err()
            .map(|reason| format!("version {version}: {reason}"))
    }
}

/// The name a topic's schema settings are kept under: a partition's are its partitioned
/// topic's, so one ConfigureTopicSchema on `/ns/t` governs every `/ns/t-part-N`.
pub fn schema_topic(topic: &TopicName) -> TopicName {
    topic
        .as_partition()
        .map_or_else(|| topic.clone(), |(base, _)| base)
}
