//! [`SchemaClient`]: the schema registry from the client (`client.schemas()`), and
//! [`SchemaRef`], the schema a producer declares (spec §6).
//!
//! Every call goes to the service URL under the client's retry policy.

use std::sync::Arc;

use bytes::Bytes;
use courier_impls::grpc::GrpcChannel;
use courier_impls::grpc::proto::danube::SchemaReference;
use courier_impls::grpc::proto::danube::schema_reference::VersionRef;
use courier_impls::grpc::proto::danube_schema::schema_registry_client::SchemaRegistryClient;
use courier_impls::grpc::proto::danube_schema::{
    CheckCompatibilityRequest, GetLatestSchemaRequest, GetSchemaRequest, GetSchemaResponse,
    ListVersionsRequest, RegisterSchemaRequest, SetCompatibilityModeRequest,
};
use courier_traits::error::InvalidInput;
use tokio_util::sync::CancellationToken;

use super::core::ClientCore;
use super::error::BrokerError;
use crate::schema_registry::{CompatibilityMode, SchemaType};

/// The schema registry of the client's broker; made by
/// [`BrokerClient::schemas`](super::BrokerClient::schemas).
#[derive(Clone, Debug)]
pub struct SchemaClient {
    core: Arc<ClientCore>,
}

/// A registered schema version, as the registry answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaInfo {
    /// The subject's id (shared by its versions).
    pub schema_id: u64,
    /// The version.
    pub version: u32,
    /// The subject.
    pub subject: String,
    /// Its type's wire name (`json_schema`, `avro`, …).
    pub schema_type: String,
    /// The definition exactly as registered.
    pub definition: Bytes,
    /// Free text.
    pub description: String,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    /// Who registered it.
    pub created_by: String,
    /// Tags.
    pub tags: Vec<String>,
    /// SHA-256 hex of the canonical form.
    pub fingerprint: String,
    /// The subject's compatibility mode (`BACKWARD`, …).
    pub compatibility_mode: String,
}

impl From<GetSchemaResponse> for SchemaInfo {
    fn from(answer: GetSchemaResponse) -> SchemaInfo {
        SchemaInfo {
            schema_id: answer.schema_id,
            version: answer.version,
            subject: answer.subject,
            schema_type: answer.schema_type,
            definition: answer.schema_definition.into(),
            description: answer.description,
            created_at: answer.created_at,
            created_by: answer.created_by,
            tags: answer.tags,
            fingerprint: answer.fingerprint,
            compatibility_mode: answer.compatibility_mode,
        }
    }
}

/// What a registration got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredSchema {
    /// The subject's id.
    pub schema_id: u64,
    /// The version.
    pub version: u32,
    /// False when the same definition was already registered (its version is returned).
    pub is_new_version: bool,
    /// SHA-256 hex of the canonical form.
    pub fingerprint: String,
}

/// The answer of a compatibility check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compatibility {
    /// Whether the definition could be registered as the subject's next version.
    pub is_compatible: bool,
    /// Why not, one entry per rule broken.
    pub errors: Vec<String>,
}

impl SchemaClient {
    pub(crate) fn new(core: Arc<ClientCore>) -> SchemaClient {
        SchemaClient { core }
    }

    /// Registers a definition under `subject`: set its type and definition on the builder,
    /// then [`execute`](RegisterSchema::execute).
    pub fn register(&self, subject: impl Into<String>) -> RegisterSchema {
        RegisterSchema {
            client: self.clone(),
            subject: subject.into(),
            definition: None,
            description: String::new(),
            created_by: "courier-broker-client".to_owned(),
            tags: Vec::new(),
        }
    }

    /// The latest version of the subject with id `schema_id`.
    ///
    /// Errors: `NotFound` ([`BrokerError::Rpc`]) for an unknown id.
    pub async fn get(&self, schema_id: u64) -> Result<SchemaInfo, BrokerError> {
        self.get_schema(schema_id, None).await
    }

    /// Version `version` of the subject with id `schema_id`.
    ///
    /// Errors: `NotFound` for an unknown id, a missing or deleted version.
    pub async fn get_version(
        &self,
        schema_id: u64,
        version: u32,
    ) -> Result<SchemaInfo, BrokerError> {
        self.get_schema(schema_id, Some(version)).await
    }

    async fn get_schema(
        &self,
        schema_id: u64,
        version: Option<u32>,
    ) -> Result<SchemaInfo, BrokerError> {
        let label = format!("schema id {schema_id}");
        self.unary("GetSchema", &label, |mut registry, call, core| async move {
            let request = core
                .request(&call, GetSchemaRequest { schema_id, version })
                .await?;
            call.unary(registry.get_schema(request)).await
        })
        .await
        .map(SchemaInfo::from)
    }

    /// The latest version of `subject`.
    ///
    /// Errors: `NotFound` for an unknown subject.
    pub async fn latest(&self, subject: &str) -> Result<SchemaInfo, BrokerError> {
        self.unary(
            "GetLatestSchema",
            subject,
            |mut registry, call, core| async move {
                let request = core
                    .request(
                        &call,
                        GetLatestSchemaRequest {
                            subject: subject.to_owned(),
                        },
                    )
                    .await?;
                call.unary(registry.get_latest_schema(request)).await
            },
        )
        .await
        .map(SchemaInfo::from)
    }

    /// The live versions of `subject`, in order.
    ///
    /// Errors: `NotFound` for an unknown subject.
    pub async fn versions(&self, subject: &str) -> Result<Vec<u32>, BrokerError> {
        let answer = self
            .unary(
                "ListVersions",
                subject,
                |mut registry, call, core| async move {
                    let request = core
                        .request(
                            &call,
                            ListVersionsRequest {
                                subject: subject.to_owned(),
                            },
                        )
                        .await?;
                    call.unary(registry.list_versions(request)).await
                },
            )
            .await?;
        Ok(answer.versions.iter().map(|v| v.version).collect())
    }

    /// Whether `definition` of `schema_type` could be the next version of `subject`, in
    /// `mode` (`None` = the subject's own mode).
    ///
    /// Errors: `NotFound` for an unknown subject, `InvalidArgument` for a bad definition,
    /// `FailedPrecondition` for Protobuf outside mode none.
    pub async fn check_compatibility(
        &self,
        subject: &str,
        schema_type: SchemaType,
        definition: impl Into<Bytes>,
        mode: Option<CompatibilityMode>,
    ) -> Result<Compatibility, BrokerError> {
        let definition: Bytes = definition.into();
        let answer = self
            .unary("CheckCompatibility", subject, |mut registry, call, core| {
                let definition = definition.clone();
                async move {
                    let request = core
                        .request(
                            &call,
                            CheckCompatibilityRequest {
                                subject: subject.to_owned(),
                                new_schema_definition: definition.to_vec(),
                                schema_type: schema_type.as_str().to_owned(),
                                compatibility_mode: mode.map(|m| m.as_str().to_ascii_lowercase()),
                            },
                        )
                        .await?;
                    call.unary(registry.check_compatibility(request)).await
                }
            })
            .await?;
        Ok(Compatibility {
            is_compatible: answer.is_compatible,
            errors: answer.errors,
        })
    }

    /// Sets `subject`'s compatibility mode.
    ///
    /// Errors: `NotFound` for an unknown subject.
    pub async fn set_mode(
        &self,
        subject: &str,
        mode: CompatibilityMode,
    ) -> Result<(), BrokerError> {
        self.unary(
            "SetCompatibilityMode",
            subject,
            |mut registry, call, core| async move {
                let request = core
                    .request(
                        &call,
                        SetCompatibilityModeRequest {
                            subject: subject.to_owned(),
                            compatibility_mode: mode.as_str().to_ascii_lowercase(),
                        },
                    )
                    .await?;
                call.unary(registry.set_compatibility_mode(request)).await
            },
        )
        .await
        .map(|_| ())
    }

    /// Resolves `reference` once, as danube-client does: the latest version, the pinned one
    /// (which must exist), or the latest if it is at least the minimum.
    ///
    /// Errors: the registry's `NotFound`; [`BrokerError::InvalidInput`] for a pinned version
    /// above the latest or a latest below the minimum.
    pub async fn resolve(&self, reference: &SchemaRef) -> Result<(u64, u32), BrokerError> {
        let latest = self.latest(&reference.subject).await?;
        match reference.version {
            VersionChoice::Latest => Ok((latest.schema_id, latest.version)),
            VersionChoice::Pinned(version) if version == latest.version => {
                Ok((latest.schema_id, latest.version))
            }
            VersionChoice::Pinned(version) if version > latest.version => Err(InvalidInput::new(
                "pinned schema version",
                &version.to_string(),
                format!(
                    "subject {:?} has versions up to {}",
                    reference.subject, latest.version
                ),
            )
            .into()),
            VersionChoice::Pinned(version) => {
                let pinned = self.get_version(latest.schema_id, version).await?;
                Ok((pinned.schema_id, pinned.version))
            }
            VersionChoice::AtLeast(minimum) if latest.version < minimum => Err(InvalidInput::new(
                "minimum schema version",
                &minimum.to_string(),
                format!(
                    "subject {:?} is at version {}",
                    reference.subject, latest.version
                ),
            )
            .into()),
            VersionChoice::AtLeast(_) => Ok((latest.schema_id, latest.version)),
        }
    }

    /// One registry call at the service URL under the retry policy.
    async fn unary<T, F, Fut>(
        &self,
        operation: &'static str,
        subject: &str,
        call: F,
    ) -> Result<T, BrokerError>
    where
        F: Fn(SchemaRegistryClient<GrpcChannel>, courier_impls::grpc::Call, Arc<ClientCore>) -> Fut,
        Fut: std::future::Future<Output = Result<T, courier_impls::grpc::GrpcError>>,
    {
        let core = &self.core;
        // Registry calls belong to no producer or consumer: nothing cancels them.
        let never = CancellationToken::new();
        core.retrying(&never, |_| async {
            let url = &core.service_url;
            let channel = core.channel(url, operation, subject)?;
            call(
                SchemaRegistryClient::new(channel),
                core.call(url),
                core.clone(),
            )
            .await
            .map_err(|e| BrokerError::rpc(operation, subject, e))
        })
        .await
    }
}

/// A registration being built; made by [`SchemaClient::register`].
#[derive(Debug)]
#[must_use = "nothing is registered until execute() is awaited"]
pub struct RegisterSchema {
    client: SchemaClient,
    subject: String,
    definition: Option<(SchemaType, Bytes)>,
    description: String,
    created_by: String,
    tags: Vec<String>,
}

impl RegisterSchema {
    /// A JSON Schema document.
    pub fn json_schema(self, definition: impl Into<Bytes>) -> Self {
        self.definition(SchemaType::JsonSchema, definition)
    }

    /// An Avro schema (JSON).
    pub fn avro(self, definition: impl Into<Bytes>) -> Self {
        self.definition(SchemaType::Avro, definition)
    }

    /// A Protocol Buffers definition (stored, not checked).
    pub fn protobuf(self, definition: impl Into<Bytes>) -> Self {
        self.definition(SchemaType::Protobuf, definition)
    }

    /// Any type with its definition (`bytes`, `string` and `number` take an empty one).
    pub fn definition(mut self, schema_type: SchemaType, definition: impl Into<Bytes>) -> Self {
        self.definition = Some((schema_type, definition.into()));
        self
    }

    /// Free text.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Who registers it (default `courier-broker-client`).
    pub fn created_by(mut self, created_by: impl Into<String>) -> Self {
        self.created_by = created_by.into();
        self
    }

    /// Tags.
    pub fn tags(mut self, tags: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Registers: a known definition returns its version (`is_new_version = false`).
    ///
    /// Errors: [`BrokerError::InvalidInput`] without a definition; the registry's
    /// `InvalidArgument` (bad subject or definition) or `FailedPrecondition` (incompatible,
    /// with the reasons) as [`BrokerError::Rpc`].
    pub async fn execute(self) -> Result<RegisteredSchema, BrokerError> {
        let Some((schema_type, definition)) = self.definition.clone() else {
            return Err(InvalidInput::new(
                "schema definition",
                "",
                "set one with json_schema(), avro(), protobuf() or definition()",
            )
            .into());
        };
        let this = &self;
        let answer = self
            .client
            .unary(
                "RegisterSchema",
                &self.subject,
                |mut registry, call, core| {
                    let definition = definition.clone();
                    async move {
                        let request = core
                            .request(
                                &call,
                                RegisterSchemaRequest {
                                    subject: this.subject.clone(),
                                    schema_type: schema_type.as_str().to_owned(),
                                    schema_definition: definition.to_vec(),
                                    description: this.description.clone(),
                                    created_by: this.created_by.clone(),
                                    tags: this.tags.clone(),
                                },
                            )
                            .await?;
                        call.unary(registry.register_schema(request)).await
                    }
                },
            )
            .await?;
        Ok(RegisteredSchema {
            schema_id: answer.schema_id,
            version: answer.version,
            is_new_version: answer.is_new_version,
            fingerprint: answer.fingerprint,
        })
    }
}

/// Which version of a subject a producer's messages follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VersionChoice {
    Latest,
    Pinned(u32),
    AtLeast(u32),
}

/// The schema a producer declares: its subject binds the topic, and the version it resolves
/// to (once, at create) is stamped on every message as `schema_id` / `schema_version`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaRef {
    subject: String,
    version: VersionChoice,
}

impl SchemaRef {
    /// The subject's latest version.
    pub fn latest(subject: impl Into<String>) -> SchemaRef {
        SchemaRef {
            subject: subject.into(),
            version: VersionChoice::Latest,
        }
    }

    /// Exactly `version` of the subject.
    pub fn pinned(subject: impl Into<String>, version: u32) -> SchemaRef {
        SchemaRef {
            subject: subject.into(),
            version: VersionChoice::Pinned(version),
        }
    }

    /// The latest version, which must be at least `version`.
    pub fn min(subject: impl Into<String>, version: u32) -> SchemaRef {
        SchemaRef {
            subject: subject.into(),
            version: VersionChoice::AtLeast(version),
        }
    }

    /// The subject.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The reference as CreateProducer carries it.
    pub(crate) fn to_wire(&self) -> SchemaReference {
        SchemaReference {
            subject: self.subject.clone(),
            version_ref: Some(match self.version {
                VersionChoice::Latest => VersionRef::UseLatest(true),
                VersionChoice::Pinned(version) => VersionRef::PinnedVersion(version),
                VersionChoice::AtLeast(version) => VersionRef::MinVersion(version),
            }),
        }
    }
}
