//! The registry folded into memory: subjects with their id, mode and versions, and the topics
//! bound to subjects. Folding is deterministic, so every node derives the same ids and
//! versions from the same events.

use std::collections::BTreeMap;

use bytes::Bytes;
use courier_traits::storage::Offset;

use super::events::RegistryEvent;
use super::types::{CompatibilityMode, SchemaType, ValidationPolicy};

/// One version of a subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaVersion {
    /// 1, 2, … within the subject (never reused, also after a deletion).
    pub version: u32,
    /// The definition's type.
    pub schema_type: SchemaType,
    /// The definition exactly as registered.
    pub definition: Bytes,
    /// SHA-256 hex of its canonical form.
    pub fingerprint: String,
    /// Free text.
    pub description: String,
    /// Who registered it.
    pub created_by: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    /// Deleted versions are kept only so that their number is not reused.
    pub deleted: bool,
}

/// A subject: one schema id for all its versions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// Its name.
    pub name: String,
    /// Its global id: 1, 2, … in order of first registration.
    pub schema_id: u64,
    /// Its compatibility mode.
    pub mode: CompatibilityMode,
    /// Every version ever registered, in order (deleted ones flagged).
    pub versions: Vec<SchemaVersion>,
}

impl Subject {
    /// The newest version not deleted.
    pub fn latest(&self) -> Option<&SchemaVersion> {
        self.versions.iter().rev().find(|found| !found.deleted)
    }

    /// Version `version`, unless missing or deleted.
    pub fn version(&self, version: u32) -> Option<&SchemaVersion> {
        self.versions
            .iter()
            .find(|found| found.version == version && !found.deleted)
    }

    /// The live version whose fingerprint is `fingerprint`.
    pub fn by_fingerprint(&self, fingerprint: &str) -> Option<&SchemaVersion> {
        self.versions
            .iter()
            .find(|found| found.fingerprint == fingerprint && !found.deleted)
    }

    /// The live versions, in order.
    pub fn live(&self) -> impl Iterator<Item = &SchemaVersion> {
        self.versions.iter().filter(|found| !found.deleted)
    }
}

/// A topic's schema settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSchema {
    /// The subject its messages follow.
    pub subject: String,
    /// What happens to messages that do not.
    pub policy: ValidationPolicy,
    /// Whether payloads are validated against the schema.
    pub payload_validation: bool,
}

/// The folded registry.
#[derive(Debug, Default)]
pub struct RegistryState {
    subjects: BTreeMap<String, Subject>,
    /// Subject names by schema id − 1.
    by_id: Vec<String>,
    topics: BTreeMap<String, TopicSchema>,
    /// The position after the last folded event (`None` = nothing folded yet).
    pub(super) position: Option<Offset>,
    /// Events folded: the index, and so the writer sequence, of the next one.
    pub(super) events: u64,
}

impl crate::folded_log::FoldedLog for RegistryState {
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

impl RegistryState {
    /// The subject `name`.
    pub fn subject(&self, name: &str) -> Option<&Subject> {
        self.subjects.get(name)
    }

    /// The subject whose id is `schema_id`.
    pub fn subject_by_id(&self, schema_id: u64) -> Option<&Subject> {
        let index = usize::try_from(schema_id.checked_sub(1)?).ok()?;
        self.subjects.get(self.by_id.get(index)?)
    }

    /// Every subject, by name.
    pub fn subjects(&self) -> impl Iterator<Item = &Subject> {
        self.subjects.values()
    }

    /// The schema settings of `topic`, if it is bound.
    pub fn topic(&self, topic: &str) -> Option<&TopicSchema> {
        self.topics.get(topic)
    }

    /// Applies one event.
    pub(super) fn apply(&mut self, event: RegistryEvent, definition: Bytes) {
        match event {
            RegistryEvent::SchemaRegistered {
                subject,
                schema_type,
                fingerprint,
                description,
                created_by,
                tags,
                created_at,
                ..
            } => {
                if !self.subjects.contains_key(&subject) {
                    self.by_id.push(subject.clone());
                    self.subjects.insert(
                        subject.clone(),
                        Subject {
                            name: subject.clone(),
                            schema_id: self.by_id.len() as u64,
                            mode: CompatibilityMode::default(),
                            versions: Vec::new(),
                        },
                    );
                }
                let Some(entry) = self.subjects.get_mut(&subject) else {
                    return;
                };
                // A racing duplicate of a live version changes nothing.
                if entry.by_fingerprint(&fingerprint).is_some() {
                    return;
                }
                let version = entry.versions.last().map_or(1, |last| last.version + 1);
                entry.versions.push(SchemaVersion {
                    version,
                    schema_type,
                    definition,
                    fingerprint,
                    description,
                    created_by,
                    tags,
                    created_at,
                    deleted: false,
                });
            }
            RegistryEvent::ModeSet { subject, mode } => {
                if let Some(entry) = self.subjects.get_mut(&subject) {
                    entry.mode = mode;
                }
            }
            RegistryEvent::VersionDeleted { subject, version } => {
                if let Some(found) = self
                    .subjects
                    .get_mut(&subject)
                    .and_then(|entry| entry.versions.iter_mut().find(|v| v.version == version))
                {
                    found.deleted = true;
                }
            }
            RegistryEvent::TopicConfigured {
                topic,
                subject,
                policy,
                payload_validation,
            } => {
                self.topics.insert(
                    topic,
                    TopicSchema {
                        subject,
                        policy,
                        payload_validation,
                    },
                );
            }
        }
    }
}
