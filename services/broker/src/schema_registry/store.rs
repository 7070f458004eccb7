//! [`SchemaRegistry`]: the registry's operations over the stream `broker/schemas`, shared by
//! every node on the storage.
//!
//! Each change is an event appended with the writer sequence of its index, after deciding on
//! the state folded up to that index: two nodes deciding at once cannot both append, and the
//! loser folds the winner's event and decides again. So racing registrations of one new
//! definition make one version, and a compatibility check always ran against the version
//! that is really the latest. Every operation first folds what other nodes appended.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use courier_traits::storage::{
    AppendRequest, StorageError, StreamConfig, StreamName, StreamStorage,
};

use super::compat;
use super::definition::ParsedDefinition;
use super::error::RegistryError;
use super::events::RegistryEvent;
use super::events::SCHEMAS_STREAM;
use super::state::{RegistryState, SchemaVersion, Subject, TopicSchema};
use super::types::{CompatibilityMode, SchemaType, ValidationPolicy};

/// How many times one change re-folds after losing the race before giving up (`Contended`).
const MAX_ATTEMPTS: usize = 16;

/// Longest subject name, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 255;
/// Longest description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;
/// Longest `created_by` and tag, in bytes.
pub const MAX_LABEL_BYTES: usize = 255;
/// Most tags on one version.
pub const MAX_TAGS: usize = 64;

/// What a registration asks for.
#[derive(Clone, Debug, Default)]
pub struct Registration {
    /// The subject.
    pub subject: String,
    /// The type, as sent (parsed case-insensitively).
    pub schema_type: String,
    /// The definition.
    pub definition: Bytes,
    /// Free text.
    pub description: String,
    /// Who registers it.
    pub created_by: String,
    /// Tags.
    pub tags: Vec<String>,
}

/// What a registration got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registered {
    /// The subject's id.
    pub schema_id: u64,
    /// The version.
    pub version: u32,
    /// False when the same definition (by fingerprint) was already a live version.
    pub is_new_version: bool,
    /// SHA-256 hex of the canonical form.
    pub fingerprint: String,
}

/// A compatibility check made before a registration's decision: against which version and
/// mode, and its answer.
struct CheckedAgainst {
    version: u32,
    mode: CompatibilityMode,
    reasons: Result<Vec<String>, RegistryError>,
}

/// One decision on the folded state: an answer, or an event to append first.
enum Step<T> {
    Done(T),
    Append(RegistryEvent),
}

/// The schema registry of a node (see the [module docs](self)).
pub struct SchemaRegistry {
    storage: Arc<dyn StreamStorage>,
    stream: StreamName,
    state: RwLock<RegistryState>,
    /// Compiled definitions by (schema id, version), for payload validation.
    compiled: Mutex<HashMap<(u64, u32), Arc<ParsedDefinition>>>,
}

impl std::fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistry")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

/// Checks a subject name: what every RPC naming one does first.
pub fn check_subject(subject: &str) -> Result<(), RegistryError> {
    let reason = if subject.is_empty() {
        "must not be empty".to_owned()
    } else if subject.len() > MAX_SUBJECT_BYTES {
        format!("{} bytes; at most {MAX_SUBJECT_BYTES}", subject.len())
    } else if subject.chars().any(char::is_control) {
        "must not contain control characters".to_owned()
    } else {
        return Ok(());
    };
    Err(RegistryError::invalid("subject", subject, reason))
}

/// Checks a registration's free-text fields: they are stored in the registry's stream.
fn check_metadata(request: &Registration) -> Result<(), RegistryError> {
    if request.description.len() > MAX_DESCRIPTION_BYTES {
        return Err(RegistryError::invalid(
            "description",
            &request.description,
            format!(
                "{} bytes; at most {MAX_DESCRIPTION_BYTES}",
                request.description.len()
            ),
        ));
    }
    if request.created_by.len() > MAX_LABEL_BYTES {
        return Err(RegistryError::invalid(
            "created_by",
            &request.created_by,
            format!(
                "{} bytes; at most {MAX_LABEL_BYTES}",
                request.created_by.len()
            ),
        ));
    }
    if request.tags.len() > MAX_TAGS {
        return Err(RegistryError::invalid(
            "tags",
            &format!("{} tags", request.tags.len()),
            format!("at most {MAX_TAGS}"),
        ));
    }
    match request.tags.iter().find(|tag| tag.len() > MAX_LABEL_BYTES) {
        Some(tag) => Err(RegistryError::invalid(
            "tags",
            tag,
            format!("{} bytes; at most {MAX_LABEL_BYTES} per tag", tag.len()),
        )),
        None => Ok(()),
    }
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

impl SchemaRegistry {
    /// Opens the registry on `storage`: creates `broker/schemas` if needed and folds it.
    ///
    /// Errors: [`RegistryError::Storage`], [`RegistryError::Corrupt`].
    pub async fn open(storage: Arc<dyn StreamStorage>) -> Result<SchemaRegistry, RegistryError> {
        let stream = StreamName::new(SCHEMAS_STREAM)
            .unwrap_or_else(|_| unreachable!("a constant, valid stream name"));
        storage
            .create(
                &stream,
                StreamConfig::with_content_type("application/json"),
                Vec::new(),
            )
            .await?;
        let registry = SchemaRegistry {
            storage,
            stream,
            state: RwLock::new(RegistryState::default()),
            compiled: Mutex::new(HashMap::new()),
        };
        registry.refresh().await?;
        Ok(registry)
    }

    /// The folded state; read it under a short lock, never across an `.await`.
    pub fn read(&self) -> RwLockReadGuard<'_, RegistryState> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Folds the events appended since the last fold (by this node or any other).
    ///
    /// Errors: [`RegistryError::Storage`], [`RegistryError::Corrupt`].
    pub async fn refresh(&self) -> Result<(), RegistryError> {
        crate::folded_log::refresh(
            &*self.storage,
            &self.stream,
            &self.state,
            |state, record| {
                let index = state.events;
                fold(state, index, record)
            },
        )
        .await
    }

    /// Decides on the freshly folded state and appends what `decide` asks for, fenced by the
    /// writer sequence; `decide` learns whether this call's own event is in the state.
    async fn commit<T>(
        &self,
        mut decide: impl FnMut(&RegistryState, bool) -> Result<Step<T>, RegistryError>,
    ) -> Result<T, RegistryError> {
        let mut appended = false;
        for _ in 0..MAX_ATTEMPTS {
            self.refresh().await?;
            let (event, index) = {
                let state = self.read();
                match decide(&state, appended)? {
                    Step::Done(answer) => return Ok(answer),
                    Step::Append(event) => (event, state.events),
                }
            };
            let request = AppendRequest::record(event.encode())
                .with_writer_seq(crate::catalog::log::writer_seq(index));
            match self.storage.append(&self.stream, request).await {
                Ok(_) => appended = true,
                // Another node appended at this index first: fold it and decide again.
                Err(StorageError::WriterSeqRegression { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Err(RegistryError::Contended)
    }

    /// RegisterSchema (spec §4): a known fingerprint returns its version; else the candidate
    /// is checked against the latest version in the subject's mode.
    ///
    /// Errors: `InvalidArgument` (subject, type, definition), `FailedPrecondition` with the
    /// incompatibilities, storage errors.
    pub async fn register(&self, request: Registration) -> Result<Registered, RegistryError> {
        check_subject(&request.subject)?;
        check_metadata(&request)?;
        let schema_type = SchemaType::parse(&request.schema_type)?;
        let candidate = ParsedDefinition::parse(schema_type, &request.definition)?;
        let fingerprint = candidate.fingerprint.clone();
        let created_at = now_seconds();
        let candidate = Arc::new(candidate);
        let checked = self
            .check_against_latest(&request.subject, &fingerprint, &candidate)
            .await?;
        self.commit(|state, appended| {
            let subject = state.subject(&request.subject);
            if let Some(found) = subject.and_then(|s| Some((s, s.by_fingerprint(&fingerprint)?))) {
                let (subject, version) = found;
                return Ok(Step::Done(Registered {
                    schema_id: subject.schema_id,
                    version: version.version,
                    is_new_version: appended,
                    fingerprint: version.fingerprint.clone(),
                }));
            }
            if let Some(subject) = subject
                && let Some(latest) = subject.latest()
            {
                let reasons = match &checked {
                    Some(CheckedAgainst {
                        version,
                        mode,
                        reasons: Ok(reasons),
                    }) if *version == latest.version && *mode == subject.mode => reasons.clone(),
                    // The subject moved on since the check (another registration or mode change
                    // raced this one): check again against what is latest now.
                    _ => {
                        let latest_parsed =
                            ParsedDefinition::parse(latest.schema_type, &latest.definition)?;
                        compat::check(subject.mode, &latest_parsed, &candidate)?
                    }
                };
                if !reasons.is_empty() {
                    return Err(RegistryError::FailedPrecondition {
                        message: format!(
                            "schema is not {} compatible with version {} of subject {:?}",
                            subject.mode, latest.version, subject.name
                        ),
                        reasons,
                    });
                }
            }
            Ok(Step::Append(RegistryEvent::SchemaRegistered {
                subject: request.subject.clone(),
                schema_type,
                definition: RegistryEvent::encode_definition(&request.definition),
                fingerprint: fingerprint.clone(),
                description: request.description.clone(),
                created_by: request.created_by.clone(),
                tags: request.tags.clone(),
                created_at,
            }))
        })
        .await
    }

    /// Checks `candidate` against the subject's latest version in its mode, outside the state
    /// lock and off the async workers: a compatibility walk over large definitions takes
    /// CPU time that must not hold up the registry's other callers (or a Tokio worker).
    /// `None` when there is nothing to check (no such subject or version yet, or the
    /// fingerprint is registered already).
    /// A failed check (or a failed task) answers `Some` with the error, or `None`: the
    /// decision then checks again under the lock, which reports it.
    async fn check_against_latest(
        &self,
        subject: &str,
        fingerprint: &str,
        candidate: &Arc<ParsedDefinition>,
    ) -> Result<Option<CheckedAgainst>, RegistryError> {
        self.refresh().await?;
        let latest = {
            let state = self.read();
            state.subject(subject).and_then(|found| {
                if found.by_fingerprint(fingerprint).is_some() {
                    return None;
                }
                found.latest().map(|latest| (found.mode, latest.clone()))
            })
        };
        let Some((mode, latest)) = latest else {
            return Ok(None);
        };
        let candidate = Arc::clone(candidate);
        let checked = tokio::task::spawn_blocking(move || CheckedAgainst {
            version: latest.version,
            mode,
            reasons: ParsedDefinition::parse(latest.schema_type, &latest.definition)
                .and_then(|parsed| compat::check(mode, &parsed, &candidate)),
        })
        .await;
        Ok(checked.ok())
    }

    /// CheckCompatibility: the reasons `definition` is incompatible with the subject's latest
    /// version in `mode` (default: the subject's); empty = compatible.
    ///
    /// Errors: `InvalidArgument`, `NotFound` for an unknown subject, `FailedPrecondition` for
    /// Protobuf outside mode none.
    pub async fn check_compatibility(
        &self,
        subject: &str,
        schema_type: &str,
        definition: &[u8],
        mode: Option<&str>,
    ) -> Result<Vec<String>, RegistryError> {
        check_subject(subject)?;
        let schema_type = SchemaType::parse(schema_type)?;
        let mode = mode.map(CompatibilityMode::parse).transpose()?;
        let candidate = ParsedDefinition::parse(schema_type, definition)?;
        self.refresh().await?;
        let latest = {
            let state = self.read();
            let found = state
                .subject(subject)
                .ok_or_else(|| unknown_subject(subject))?;
            let mode = mode.unwrap_or(found.mode);
            match found.latest() {
                None => return Ok(Vec::new()),
                Some(latest) => (mode, latest.clone()),
            }
        };
        let (mode, latest) = latest;
        let latest = ParsedDefinition::parse(latest.schema_type, &latest.definition)?;
        compat::check(mode, &latest, &candidate)
    }

    /// GetSchema: `version` of the subject with id `schema_id`, or its latest.
    ///
    /// Errors: `NotFound` (unknown id, missing or deleted version).
    pub async fn get(
        &self,
        schema_id: u64,
        version: Option<u32>,
    ) -> Result<(Subject, SchemaVersion), RegistryError> {
        self.refresh().await?;
        let state = self.read();
        let subject = state.subject_by_id(schema_id).ok_or_else(|| {
            RegistryError::NotFound(format!("schema id {schema_id} does not exist"))
        })?;
        let found = match version {
            Some(version) => subject.version(version).ok_or_else(|| {
                RegistryError::NotFound(format!(
                    "version {version} of subject {:?} (schema id {schema_id}) does not exist",
                    subject.name
                ))
            })?,
            None => latest_of(subject)?,
        };
        Ok((subject.clone(), found.clone()))
    }

    /// GetLatestSchema.
    ///
    /// Errors: `InvalidArgument`, `NotFound`.
    pub async fn latest(&self, subject: &str) -> Result<(Subject, SchemaVersion), RegistryError> {
        check_subject(subject)?;
        self.refresh().await?;
        let state = self.read();
        let found = state
            .subject(subject)
            .ok_or_else(|| unknown_subject(subject))?;
        Ok((found.clone(), latest_of(found)?.clone()))
    }

    /// The subject `name` as folded now.
    ///
    /// Errors: `InvalidArgument`, `NotFound`.
    pub async fn subject(&self, subject: &str) -> Result<Subject, RegistryError> {
        check_subject(subject)?;
        self.refresh().await?;
        self.read()
            .subject(subject)
            .cloned()
            .ok_or_else(|| unknown_subject(subject))
    }

    /// Every subject.
    ///
    /// Errors: storage errors.
    pub async fn subjects(&self) -> Result<Vec<Subject>, RegistryError> {
        self.refresh().await?;
        Ok(self.read().subjects().cloned().collect())
    }

    /// DeleteSchemaVersion: the version is gone for reads and checks; its number stays used.
    ///
    /// Errors: `InvalidArgument`, `NotFound`.
    pub async fn delete_version(&self, subject: &str, version: u32) -> Result<(), RegistryError> {
        check_subject(subject)?;
        self.commit(|state, _| {
            let found = state
                .subject(subject)
                .ok_or_else(|| unknown_subject(subject))?;
            match found.version(version) {
                Some(_) => Ok(Step::Append(RegistryEvent::VersionDeleted {
                    subject: subject.to_owned(),
                    version,
                })),
                None if found.versions.iter().any(|v| v.version == version) => Ok(Step::Done(())),
                None => Err(RegistryError::NotFound(format!(
                    "version {version} of subject {subject:?} does not exist"
                ))),
            }
        })
        .await
    }

    /// SetCompatibilityMode.
    ///
    /// Errors: `InvalidArgument`, `NotFound`.
    pub async fn set_mode(
        &self,
        subject: &str,
        mode: &str,
    ) -> Result<CompatibilityMode, RegistryError> {
        check_subject(subject)?;
        let mode = CompatibilityMode::parse(mode)?;
        self.commit(|state, appended| {
            let found = state
                .subject(subject)
                .ok_or_else(|| unknown_subject(subject))?;
            // Once this call's event is in the log it is done: a change another admin made
            // after it wins (last writer wins) instead of both re-appending in turn.
            if appended || found.mode == mode {
                return Ok(Step::Done(mode));
            }
            Ok(Step::Append(RegistryEvent::ModeSet {
                subject: subject.to_owned(),
                mode,
            }))
        })
        .await
    }

    /// Sets `topic`'s schema settings (ConfigureTopicSchema and UpdateTopicValidationPolicy;
    /// `subject = None` keeps the bound one).
    ///
    /// Errors: `NotFound` (unknown subject; a topic not bound when keeping its subject).
    pub async fn configure_topic(
        &self,
        topic: &str,
        subject: Option<&str>,
        policy: ValidationPolicy,
        payload_validation: bool,
    ) -> Result<TopicSchema, RegistryError> {
        if let Some(subject) = subject {
            check_subject(subject)?;
        }
        self.commit(|state, appended| {
            let subject = match subject {
                Some(subject) => {
                    state
                        .subject(subject)
                        .ok_or_else(|| unknown_subject(subject))?;
                    subject.to_owned()
                }
                None => state
                    .topic(topic)
                    .ok_or_else(|| {
                        RegistryError::NotFound(format!(
                            "topic {topic} has no schema configuration"
                        ))
                    })?
                    .subject
                    .clone(),
            };
            let wanted = TopicSchema {
                subject: subject.clone(),
                policy,
                payload_validation,
            };
            // As in `set_mode`: once appended, a later change by another admin wins.
            if appended || state.topic(topic) == Some(&wanted) {
                return Ok(Step::Done(wanted));
            }
            Ok(Step::Append(RegistryEvent::TopicConfigured {
                topic: topic.to_owned(),
                subject,
                policy,
                payload_validation,
            }))
        })
        .await
    }

    /// Binds `topic` to `subject` unless it is bound already (what the first producer with a
    /// schema reference does), with the default policy (`warn`, no payload validation).
    ///
    /// Errors: `FailedPrecondition` when the subject has no live version or the topic is
    /// bound to another subject.
    pub async fn bind_topic(
        &self,
        topic: &str,
        subject: &str,
    ) -> Result<TopicSchema, RegistryError> {
        check_subject(subject)?;
        self.commit(|state, _| {
            let found = state.subject(subject).filter(|s| s.latest().is_some()).ok_or_else(|| {
                RegistryError::precondition(format!(
                    "schema subject {subject:?} is not registered: register a schema first"
                ))
            })?;
            match state.topic(topic) {
                Some(bound) if bound.subject == found.name => Ok(Step::Done(bound.clone())),
                Some(bound) => Err(RegistryError::precondition(format!(
                    "topic {topic} is bound to schema subject {:?}, not {subject:?}; an admin can rebind it with ConfigureTopicSchema",
                    bound.subject
                ))),
                None => Ok(Step::Append(RegistryEvent::TopicConfigured {
                    topic: topic.to_owned(),
                    subject: subject.to_owned(),
                    policy: ValidationPolicy::default(),
                    payload_validation: false,
                })),
            }
        })
        .await
    }

    /// The compiled definition of (`schema_id`, `version`), cached; `None` if it does not
    /// exist in the folded state.
    pub fn compiled(&self, schema_id: u64, version: u32) -> Option<Arc<ParsedDefinition>> {
        let key = (schema_id, version);
        if let Some(found) = self
            .compiled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Some(found.clone());
        }
        let stored = {
            let state = self.read();
            state.subject_by_id(schema_id)?.version(version)?.clone()
        };
        // A stored definition parsed when it was registered; parsing again cannot fail
        // unless the record was tampered with, which then validates nothing.
        let parsed =
            Arc::new(ParsedDefinition::parse(stored.schema_type, &stored.definition).ok()?);
        self.compiled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, parsed.clone());
        Some(parsed)
    }
}

fn unknown_subject(subject: &str) -> RegistryError {
    RegistryError::NotFound(format!("schema subject {subject:?} does not exist"))
}

fn latest_of(subject: &Subject) -> Result<&SchemaVersion, RegistryError> {
    subject.latest().ok_or_else(|| {
        RegistryError::NotFound(format!(
            "schema subject {:?} has no version (all deleted)",
            subject.name
        ))
    })
}

/// Folds record `index`; records of an event kind this build does not know are skipped, so
/// older nodes keep working beside newer ones.
fn fold(state: &mut RegistryState, index: u64, record: &[u8]) -> Result<(), RegistryError> {
    match RegistryEvent::decode(record) {
        Ok(event) => {
            let definition = match &event {
                RegistryEvent::SchemaRegistered { definition, .. } => {
                    RegistryEvent::decode_definition(definition)
                        .map_err(|reason| RegistryError::Corrupt { index, reason })?
                }
                _ => Bytes::new(),
            };
            state.apply(event, definition);
            Ok(())
        }
        Err(reason) => match serde_json::from_slice::<serde_json::Value>(record) {
            Ok(serde_json::Value::Object(fields))
                if fields
                    .get("event")
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(|kind| {
                        !matches!(
                            kind,
                            "schema_registered"
                                | "mode_set"
                                | "version_deleted"
                                | "topic_configured"
                        )
                    }) =>
            {
                tracing::debug!(
                    index,
                    "schema registry: skipping an event kind this build does not know"
                );
                Ok(())
            }
            _ => Err(RegistryError::Corrupt { index, reason }),
        },
    }
}
