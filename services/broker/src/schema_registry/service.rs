//! `danube_schema.SchemaRegistry`: the eleven RPCs over a [`SchemaRegistry`], errors as spec
//! §4 has them (`InvalidArgument`, `NotFound`, `FailedPrecondition` with reasons).

use std::sync::Arc;

use courier_impls::grpc::proto::danube_schema::schema_registry_server::SchemaRegistry as SchemaRegistryRpc;
use courier_impls::grpc::proto::danube_schema::{
    CheckCompatibilityRequest, CheckCompatibilityResponse, ConfigureTopicSchemaRequest,
    ConfigureTopicSchemaResponse, DeleteSchemaVersionRequest, DeleteSchemaVersionResponse,
    GetLatestSchemaRequest, GetSchemaRequest, GetSchemaResponse, GetTopicSchemaConfigRequest,
    GetTopicSchemaConfigResponse, ListSubjectsRequest, ListSubjectsResponse, ListVersionsRequest,
    ListVersionsResponse, RegisterSchemaRequest, RegisterSchemaResponse, SchemaVersionInfo,
    SetCompatibilityModeRequest, SetCompatibilityModeResponse, SubjectSummary,
    UpdateTopicValidationPolicyRequest, UpdateTopicValidationPolicyResponse,
};
use tonic::{Request, Response, Status};

use super::error::RegistryError;
use super::state::{SchemaVersion, Subject};
use super::store::{Registration, SchemaRegistry};
use super::topics::schema_topic;
use super::types::ValidationPolicy;
use crate::topic::TopicName;

/// Serves `danube_schema.SchemaRegistry`.
#[derive(Clone, Debug)]
pub struct RegistryService {
    registry: Arc<SchemaRegistry>,
}

impl RegistryService {
    /// The service over `registry`.
    pub fn new(registry: Arc<SchemaRegistry>) -> RegistryService {
        RegistryService { registry }
    }
}

fn schema_response(subject: &Subject, version: &SchemaVersion) -> GetSchemaResponse {
    GetSchemaResponse {
        schema_id: subject.schema_id,
        version: version.version,
        subject: subject.name.clone(),
        schema_type: version.schema_type.as_str().to_owned(),
        schema_definition: version.definition.to_vec(),
        description: version.description.clone(),
        created_at: version.created_at,
        created_by: version.created_by.clone(),
        tags: version.tags.clone(),
        fingerprint: version.fingerprint.clone(),
        compatibility_mode: subject.mode.as_str().to_owned(),
    }
}

/// A topic RPC's name, as its settings are kept (a partition's under its topic).
fn topic_name(name: &str) -> Result<String, Status> {
    TopicName::new(name)
        .map(|topic| schema_topic(&topic).to_string())
        .map_err(crate::status::invalid_argument)
}

#[tonic::async_trait]
impl SchemaRegistryRpc for RegistryService {
    async fn register_schema(
        &self,
        request: Request<RegisterSchemaRequest>,
    ) -> Result<Response<RegisterSchemaResponse>, Status> {
        let request = request.into_inner();
        let registered = self
            .registry
            .register(Registration {
                subject: request.subject,
                schema_type: request.schema_type,
                definition: request.schema_definition.into(),
                description: request.description,
                created_by: request.created_by,
                tags: request.tags,
            })
            .await?;
        Ok(Response::new(RegisterSchemaResponse {
            schema_id: registered.schema_id,
            version: registered.version,
            is_new_version: registered.is_new_version,
            fingerprint: registered.fingerprint,
        }))
    }

    async fn get_schema(
        &self,
        request: Request<GetSchemaRequest>,
    ) -> Result<Response<GetSchemaResponse>, Status> {
        let request = request.into_inner();
        let (subject, version) = self
            .registry
            .get(request.schema_id, request.version)
            .await?;
        Ok(Response::new(schema_response(&subject, &version)))
    }

    async fn get_latest_schema(
        &self,
        request: Request<GetLatestSchemaRequest>,
    ) -> Result<Response<GetSchemaResponse>, Status> {
        let (subject, version) = self.registry.latest(&request.into_inner().subject).await?;
        Ok(Response::new(schema_response(&subject, &version)))
    }

    async fn list_versions(
        &self,
        request: Request<ListVersionsRequest>,
    ) -> Result<Response<ListVersionsResponse>, Status> {
        let subject = self.registry.subject(&request.into_inner().subject).await?;
        let versions = subject
            .live()
            .map(|version| SchemaVersionInfo {
                version: version.version,
                created_at: version.created_at,
                created_by: version.created_by.clone(),
                description: version.description.clone(),
                fingerprint: version.fingerprint.clone(),
                schema_id: subject.schema_id,
            })
            .collect();
        Ok(Response::new(ListVersionsResponse { versions }))
    }

    async fn check_compatibility(
        &self,
        request: Request<CheckCompatibilityRequest>,
    ) -> Result<Response<CheckCompatibilityResponse>, Status> {
        let request = request.into_inner();
        let errors = self
            .registry
            .check_compatibility(
                &request.subject,
                &request.schema_type,
                &request.new_schema_definition,
                request.compatibility_mode.as_deref(),
            )
            .await?;
        Ok(Response::new(CheckCompatibilityResponse {
            is_compatible: errors.is_empty(),
            errors,
        }))
    }

    async fn delete_schema_version(
        &self,
        request: Request<DeleteSchemaVersionRequest>,
    ) -> Result<Response<DeleteSchemaVersionResponse>, Status> {
        let request = request.into_inner();
        self.registry
            .delete_version(&request.subject, request.version)
            .await?;
        Ok(Response::new(DeleteSchemaVersionResponse {
            success: true,
            message: format!(
                "version {} of subject {:?} deleted",
                request.version, request.subject
            ),
        }))
    }

    async fn set_compatibility_mode(
        &self,
        request: Request<SetCompatibilityModeRequest>,
    ) -> Result<Response<SetCompatibilityModeResponse>, Status> {
        let request = request.into_inner();
        let mode = self
            .registry
            .set_mode(&request.subject, &request.compatibility_mode)
            .await?;
        Ok(Response::new(SetCompatibilityModeResponse {
            success: true,
            message: format!("subject {:?} is now {mode}", request.subject),
        }))
    }

    async fn configure_topic_schema(
        &self,
        request: Request<ConfigureTopicSchemaRequest>,
    ) -> Result<Response<ConfigureTopicSchemaResponse>, Status> {
        let request = request.into_inner();
        let topic = topic_name(&request.topic_name)?;
        let policy = ValidationPolicy::parse(&request.validation_policy)?;
        let configured = self
            .registry
            .configure_topic(
                &topic,
                Some(&request.schema_subject),
                policy,
                request.enable_payload_validation,
            )
            .await?;
        Ok(Response::new(ConfigureTopicSchemaResponse {
            success: true,
            message: format!(
                "topic {topic} follows subject {:?} ({}, payload validation {})",
                configured.subject,
                configured.policy.as_str(),
                configured.payload_validation
            ),
        }))
    }

    async fn update_topic_validation_policy(
        &self,
        request: Request<UpdateTopicValidationPolicyRequest>,
    ) -> Result<Response<UpdateTopicValidationPolicyResponse>, Status> {
        let request = request.into_inner();
        let topic = topic_name(&request.topic_name)?;
        let policy = ValidationPolicy::parse(&request.validation_policy)?;
        let configured = self
            .registry
            .configure_topic(&topic, None, policy, request.enable_payload_validation)
            .await?;
        Ok(Response::new(UpdateTopicValidationPolicyResponse {
            success: true,
            message: format!(
                "topic {topic}: {}, payload validation {}",
                configured.policy.as_str(),
                configured.payload_validation
            ),
        }))
    }

    async fn get_topic_schema_config(
        &self,
        request: Request<GetTopicSchemaConfigRequest>,
    ) -> Result<Response<GetTopicSchemaConfigResponse>, Status> {
        let topic = topic_name(&request.into_inner().topic_name)?;
        self.registry.refresh().await?;
        let state = self.registry.read();
        let config = state.topic(&topic).ok_or_else(|| {
            Status::from(RegistryError::NotFound(format!(
                "topic {topic} has no schema configuration"
            )))
        })?;
        Ok(Response::new(GetTopicSchemaConfigResponse {
            schema_subject: config.subject.clone(),
            validation_policy: config.policy.as_str().to_owned(),
            enable_payload_validation: config.payload_validation,
            schema_id: state
                .subject(&config.subject)
                .map_or(0, |subject| subject.schema_id),
        }))
    }

    async fn list_subjects(
        &self,
        _request: Request<ListSubjectsRequest>,
    ) -> Result<Response<ListSubjectsResponse>, Status> {
        let subjects = self
            .registry
            .subjects()
            .await?
            .into_iter()
            .map(|subject| {
                let latest = subject.latest();
                SubjectSummary {
                    subject: subject.name.clone(),
                    schema_type: latest
                        .map(|v| v.schema_type.as_str().to_owned())
                        .unwrap_or_default(),
                    latest_version: latest.map_or(0, |v| v.version),
                    compatibility_mode: subject.mode.as_str().to_owned(),
                    schema_id: subject.schema_id,
                    tags: latest.map(|v| v.tags.clone()).unwrap_or_default(),
                }
            })
            .collect();
        Ok(Response::new(ListSubjectsResponse { subjects }))
    }
}
