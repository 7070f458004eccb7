//! B9: the schema registry through the generated `danube_schema` stubs, served in-process by
//! [`BrokerServer`]: every RPC, ids and versions, fingerprint dedup, modes and overrides,
//! deletion, errors; topic binding by the first producer, policies and payload validation.
//! (Two registries sharing one storage: `cli/tests/broker_registry.rs`.)

use std::sync::Arc;

use courier_broker::directory::NodeUrls;
use courier_broker::schema_registry::TopicSchemas;
use courier_broker::server::{BrokerConfig, BrokerServer};
use courier_impls::grpc::GrpcChannel;
use courier_impls::grpc::proto::danube::producer_service_client::ProducerServiceClient;
use courier_impls::grpc::proto::danube::schema_reference::VersionRef;
use courier_impls::grpc::proto::danube::{
    DispatchStrategy, MsgId, ProducerAccessMode, ProducerRequest, SchemaReference, StreamMessage,
};
use courier_impls::grpc::proto::danube_schema::schema_registry_client::SchemaRegistryClient;
use courier_impls::grpc::proto::danube_schema::{
    CheckCompatibilityRequest, ConfigureTopicSchemaRequest, DeleteSchemaVersionRequest,
    GetLatestSchemaRequest, GetSchemaRequest, GetTopicSchemaConfigRequest, ListSubjectsRequest,
    ListVersionsRequest, RegisterSchemaRequest, RegisterSchemaResponse,
    SetCompatibilityModeRequest, UpdateTopicValidationPolicyRequest,
};
use courier_impls::grpc::{ChannelOptions, GrpcChannels, InProcessNetwork};
use courier_impls::memory::MemoryStreamStorage;
use courier_traits::storage::StreamStorage;
use tokio::sync::oneshot;
use tonic::Code;

const HERE: &str = "http://broker-a.test:6650";

const USER_V1: &str =
    r#"{"type":"object","properties":{"id":{"type":"integer"}},"required":["id"]}"#;
/// V1 with an optional property: compatible in every mode.
const USER_V2: &str = r#"{"type":"object","properties":{"id":{"type":"integer"},"name":{"type":"string"}},"required":["id"]}"#;
/// A new required field: not backward compatible.
const USER_REQUIRED_EMAIL: &str = r#"{"type":"object","properties":{"id":{"type":"integer"},"email":{"type":"string"}},"required":["id","email"]}"#;

struct Node {
    channels: GrpcChannels,
    schemas: Arc<TopicSchemas>,
    metrics: courier_broker::metrics::MetricsEndpoint,
    _stop: oneshot::Sender<()>,
}

async fn start(storage: Arc<dyn StreamStorage>) -> Node {
    let config = BrokerConfig::new(NodeUrls::same(HERE).expect("valid"));
    let server = BrokerServer::open(storage, config).await.expect("open");
    let schemas = server.schemas().clone();
    let metrics = server.metrics_endpoint();
    let network = InProcessNetwork::new();
    let listener = network.listen(HERE).expect("listen");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.serve_with_incoming(listener, async {
        let _ = stopped.await;
    }));
    Node {
        channels: GrpcChannels::in_process(network, ChannelOptions::default()),
        schemas,
        metrics,
        _stop: stop,
    }
}

impl Node {
    fn channel(&self) -> GrpcChannel {
        self.channels.channel(HERE).expect("channel")
    }

    fn registry(&self) -> SchemaRegistryClient<GrpcChannel> {
        SchemaRegistryClient::new(self.channel())
    }

    fn producers(&self) -> ProducerServiceClient<GrpcChannel> {
        ProducerServiceClient::new(self.channel())
    }

    async fn register(
        &self,
        subject: &str,
        schema_type: &str,
        definition: &str,
    ) -> Result<RegisterSchemaResponse, tonic::Status> {
        self.registry()
            .register_schema(RegisterSchemaRequest {
                subject: subject.into(),
                schema_type: schema_type.into(),
                schema_definition: definition.as_bytes().to_vec(),
                description: format!("{subject} schema"),
                created_by: "b9".into(),
                tags: vec!["test".into()],
            })
            .await
            .map(tonic::Response::into_inner)
    }

    async fn versions(&self, subject: &str) -> Vec<u32> {
        self.registry()
            .list_versions(ListVersionsRequest {
                subject: subject.into(),
            })
            .await
            .expect("list versions")
            .into_inner()
            .versions
            .iter()
            .map(|v| v.version)
            .collect()
    }

    async fn check(
        &self,
        subject: &str,
        definition: &str,
        mode: Option<&str>,
    ) -> Result<(bool, Vec<String>), tonic::Status> {
        self.registry()
            .check_compatibility(CheckCompatibilityRequest {
                subject: subject.into(),
                new_schema_definition: definition.as_bytes().to_vec(),
                schema_type: "json_schema".into(),
                compatibility_mode: mode.map(str::to_owned),
            })
            .await
            .map(|r| {
                let r = r.into_inner();
                (r.is_compatible, r.errors)
            })
    }

    async fn create(
        &self,
        topic: &str,
        name: &str,
        reference: Option<SchemaReference>,
    ) -> Result<u64, tonic::Status> {
        self.producers()
            .create_producer(ProducerRequest {
                request_id: 1,
                producer_name: name.into(),
                topic_name: topic.into(),
                schema_ref: reference,
                producer_access_mode: ProducerAccessMode::Shared.into(),
                dispatch_strategy: DispatchStrategy::Reliable.into(),
            })
            .await
            .map(|r| r.into_inner().producer_id)
    }

    async fn send(
        &self,
        topic: &str,
        name: &str,
        producer_id: u64,
        schema: Option<(u64, u32)>,
        payload: &[u8],
    ) -> Result<(), tonic::Status> {
        self.producers()
            .send_message(StreamMessage {
                request_id: 5,
                msg_id: Some(MsgId {
                    producer_id,
                    topic_name: topic.into(),
                    ..MsgId::default()
                }),
                payload: payload.to_vec().into(),
                producer_name: name.into(),
                schema_id: schema.map(|(id, _)| id),
                schema_version: schema.map(|(_, version)| version),
                ..StreamMessage::default()
            })
            .await
            .map(|_| ())
    }

    async fn configure(&self, topic: &str, subject: &str, policy: &str, payloads: bool) {
        self.registry()
            .configure_topic_schema(ConfigureTopicSchemaRequest {
                topic_name: topic.into(),
                schema_subject: subject.into(),
                validation_policy: policy.into(),
                enable_payload_validation: payloads,
            })
            .await
            .expect("configure topic schema");
    }
}

fn latest(subject: &str) -> SchemaReference {
    SchemaReference {
        subject: subject.into(),
        version_ref: Some(VersionRef::UseLatest(true)),
    }
}

fn assert_code<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, says: &str) {
    match result {
        Err(status) => {
            assert_eq!(status.code(), code, "{status:?}");
            assert!(
                status.message().contains(says),
                "{:?} lacks {says:?}",
                status.message()
            );
        }
        Ok(value) => panic!("expected {code:?}, got {value:?}"),
    }
}

#[tokio::test]
async fn b9_registry_operations_ids_versions_dedup_modes_and_deletion() {
    let node = start(Arc::new(MemoryStreamStorage::new())).await;
    let first = node
        .register("users", "json_schema", USER_V1)
        .await
        .expect("v1");
    assert_eq!(
        (first.schema_id, first.version, first.is_new_version),
        (1, 1, true)
    );
    assert_eq!(first.fingerprint.len(), 64);
    // The same definition, keys reordered and spaced: the same version.
    let again = node
        .register("users", "JSON_SCHEMA", r#"{ "required": ["id"], "type": "object", "properties": {"id": {"type": "integer"}} }"#)
        .await
        .expect("again");
    assert_eq!(
        (again.schema_id, again.version, again.is_new_version),
        (1, 1, false)
    );
    assert_eq!(again.fingerprint, first.fingerprint);
    let second = node
        .register("users", "json_schema", USER_V2)
        .await
        .expect("v2");
    assert_eq!(
        (second.schema_id, second.version, second.is_new_version),
        (1, 2, true)
    );
    assert_code(
        node.register("users", "json_schema", USER_REQUIRED_EMAIL)
            .await,
        Code::FailedPrecondition,
        "new required field \"email\"",
    );
    let orders = node.register("orders", "string", "").await.expect("orders");
    assert_eq!(
        (orders.schema_id, orders.version),
        (2, 1),
        "a dense id per subject"
    );

    // Reads: definitions exactly as registered; the mode comes along.
    let got = node
        .registry()
        .get_schema(GetSchemaRequest {
            schema_id: 1,
            version: None,
        })
        .await
        .expect("get latest by id")
        .into_inner();
    assert_eq!((got.version, got.subject.as_str()), (2, "users"));
    assert_eq!(got.schema_definition, USER_V2.as_bytes());
    assert_eq!(
        (got.compatibility_mode.as_str(), got.schema_type.as_str()),
        ("BACKWARD", "json_schema")
    );
    assert_eq!(
        (got.created_by.as_str(), got.tags.clone()),
        ("b9", vec!["test".to_owned()])
    );
    let v1 = node
        .registry()
        .get_schema(GetSchemaRequest {
            schema_id: 1,
            version: Some(1),
        })
        .await
        .expect("v1 by id")
        .into_inner();
    assert_eq!(v1.schema_definition, USER_V1.as_bytes());
    let newest = node
        .registry()
        .get_latest_schema(GetLatestSchemaRequest {
            subject: "users".into(),
        })
        .await
        .expect("latest")
        .into_inner();
    assert_eq!(newest.version, 2);
    assert_eq!(node.versions("users").await, vec![1, 2]);

    // CheckCompatibility: compatible, incompatible with reasons, the mode override.
    assert_eq!(
        node.check("users", USER_V2, None).await.expect("check"),
        (true, vec![])
    );
    let (compatible, reasons) = node
        .check("users", USER_REQUIRED_EMAIL, None)
        .await
        .expect("check");
    assert!(!compatible);
    assert!(reasons.iter().any(|r| r.contains("email")), "{reasons:?}");
    assert_eq!(
        node.check("users", USER_REQUIRED_EMAIL, Some("NONE"))
            .await
            .expect("check"),
        (true, vec![])
    );
    assert!(
        node.check("users", USER_REQUIRED_EMAIL, Some("forward"))
            .await
            .expect("check")
            .0
    );
    assert_code(
        node.check("nobody", USER_V1, None).await,
        Code::NotFound,
        "nobody",
    );

    // Mode none takes the incompatible version; deleting it frees nothing.
    node.registry()
        .set_compatibility_mode(SetCompatibilityModeRequest {
            subject: "users".into(),
            compatibility_mode: "None".into(),
        })
        .await
        .expect("mode none");
    let third = node
        .register("users", "json_schema", USER_REQUIRED_EMAIL)
        .await
        .expect("v3");
    assert_eq!(third.version, 3);
    node.registry()
        .delete_schema_version(DeleteSchemaVersionRequest {
            subject: "users".into(),
            version: 3,
        })
        .await
        .expect("delete");
    assert_code(
        node.registry()
            .get_schema(GetSchemaRequest {
                schema_id: 1,
                version: Some(3),
            })
            .await,
        Code::NotFound,
        "version 3",
    );
    assert_eq!(node.versions("users").await, vec![1, 2]);
    let fourth = node
        .register("users", "json_schema", USER_REQUIRED_EMAIL)
        .await
        .expect("v4");
    assert_eq!(
        (fourth.version, fourth.is_new_version),
        (4, true),
        "numbers are never reused"
    );

    let subjects = node
        .registry()
        .list_subjects(ListSubjectsRequest {})
        .await
        .expect("subjects")
        .into_inner()
        .subjects;
    let summary: Vec<_> = subjects
        .iter()
        .map(|s| {
            (
                s.subject.as_str(),
                s.schema_id,
                s.latest_version,
                s.compatibility_mode.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![("orders", 2, 1, "BACKWARD"), ("users", 1, 4, "NONE")]
    );

    // Protobuf: stored, but a second version needs mode none.
    node.register("events", "proto", "syntax = \"proto3\"; message E {}")
        .await
        .expect("proto v1");
    assert_code(
        node.register(
            "events",
            "protobuf",
            "syntax = \"proto3\"; message E { int32 a = 1; }",
        )
        .await,
        Code::FailedPrecondition,
        "protobuf",
    );
}

#[tokio::test]
async fn b2_b9_bad_registry_input_is_invalid_argument_or_not_found() {
    let node = start(Arc::new(MemoryStreamStorage::new())).await;
    node.register("users", "json_schema", USER_V1)
        .await
        .expect("v1");
    for (subject, schema_type, definition, says) in [
        ("", "json_schema", USER_V1, "subject"),
        ("users", "xml", USER_V1, "schema_type"),
        ("users", "json_schema", "{not json", "schema_definition"),
        (
            "users",
            "json_schema",
            r#"{"type":"nonsense"}"#,
            "schema_definition",
        ),
        ("users", "avro", r#"{"type":"record"}"#, "schema_definition"),
    ] {
        assert_code(
            node.register(subject, schema_type, definition).await,
            Code::InvalidArgument,
            says,
        );
    }
    assert_code(
        node.check("users", USER_V1, Some("sideways")).await,
        Code::InvalidArgument,
        "compatibility_mode",
    );
    let mode = node
        .registry()
        .set_compatibility_mode(SetCompatibilityModeRequest {
            subject: "users".into(),
            compatibility_mode: "transitive".into(),
        })
        .await;
    assert_code(mode, Code::InvalidArgument, "compatibility_mode");
    let unknown = node
        .registry()
        .get_latest_schema(GetLatestSchemaRequest {
            subject: "ghost".into(),
        })
        .await;
    assert_code(unknown, Code::NotFound, "ghost");
    let unknown_id = node
        .registry()
        .get_schema(GetSchemaRequest {
            schema_id: 99,
            version: None,
        })
        .await;
    assert_code(unknown_id, Code::NotFound, "99");
    let deleted = node
        .registry()
        .delete_schema_version(DeleteSchemaVersionRequest {
            subject: "users".into(),
            version: 7,
        })
        .await;
    assert_code(deleted, Code::NotFound, "version 7");
    let topic = node
        .registry()
        .get_topic_schema_config(GetTopicSchemaConfigRequest {
            topic_name: "/a".into(),
        })
        .await;
    assert_code(topic, Code::InvalidArgument, "/a");
    let policy = node
        .registry()
        .update_topic_validation_policy(UpdateTopicValidationPolicyRequest {
            topic_name: "/default/unbound".into(),
            validation_policy: "enforce".into(),
            enable_payload_validation: false,
        })
        .await;
    assert_code(policy, Code::NotFound, "no schema configuration");
}

#[tokio::test]
async fn b9_topic_binding_policies_and_payload_validation() {
    let node = start(Arc::new(MemoryStreamStorage::new())).await;
    let topic = "/default/users";
    assert_code(
        node.create(topic, "p1", Some(latest("users"))).await,
        Code::FailedPrecondition,
        "not registered",
    );
    let users = node
        .register("users", "json_schema", USER_V1)
        .await
        .expect("users");
    node.register("users", "json_schema", USER_V2)
        .await
        .expect("users v2");
    node.register("other", "string", "").await.expect("other");

    let producer = node
        .create(topic, "p1", Some(latest("users")))
        .await
        .expect("binds");
    let config = node
        .registry()
        .get_topic_schema_config(GetTopicSchemaConfigRequest {
            topic_name: topic.into(),
        })
        .await
        .expect("config")
        .into_inner();
    assert_eq!(
        (
            config.schema_subject.as_str(),
            config.validation_policy.as_str(),
            config.schema_id
        ),
        ("users", "warn", users.schema_id)
    );
    assert_code(
        node.create(topic, "p2", Some(latest("other"))).await,
        Code::FailedPrecondition,
        "bound to schema subject \"users\"",
    );
    let pinned = |version| SchemaReference {
        subject: "users".into(),
        version_ref: Some(VersionRef::PinnedVersion(version)),
    };
    node.create(topic, "p3", Some(pinned(1)))
        .await
        .expect("pinned 1 exists");
    assert_code(
        node.create(topic, "p4", Some(pinned(9))).await,
        Code::FailedPrecondition,
        "pinned version 9",
    );
    let minimum = SchemaReference {
        subject: "users".into(),
        version_ref: Some(VersionRef::MinVersion(3)),
    };
    assert_code(
        node.create(topic, "p5", Some(minimum)).await,
        Code::FailedPrecondition,
        ">= 3",
    );

    // warn: kept and counted.
    node.send(topic, "p1", producer, None, b"{}")
        .await
        .expect("warn keeps it");
    assert_eq!(node.schemas.warnings(), 1);
    assert!(
        node.metrics
            .render()
            .contains("courier_broker_schema_warnings_total 1\n"),
        "{}",
        node.metrics.render()
    );

    // enforce: id and version must exist; payloads checked once enabled.
    node.configure(topic, "users", "ENFORCE", false).await;
    let id = users.schema_id;
    node.send(topic, "p1", producer, Some((id, 2)), b"not even json")
        .await
        .expect("no payload check");
    assert_code(
        node.send(topic, "p1", producer, None, b"{}").await,
        Code::InvalidArgument,
        "no schema_id",
    );
    assert_code(
        node.send(topic, "p1", producer, Some((id + 1, 1)), b"{}")
            .await,
        Code::InvalidArgument,
        "schema_id",
    );
    assert_code(
        node.send(topic, "p1", producer, Some((id, 5)), b"{}").await,
        Code::InvalidArgument,
        "schema_version 5",
    );
    node.configure(topic, "users", "enforce", true).await;
    node.send(
        topic,
        "p1",
        producer,
        Some((id, 2)),
        br#"{"id":7,"name":"ann"}"#,
    )
    .await
    .expect("valid payload");
    assert_code(
        node.send(topic, "p1", producer, Some((id, 2)), br#"{"name":"ann"}"#)
            .await,
        Code::InvalidArgument,
        "does not match",
    );
    assert_code(
        node.send(topic, "p1", producer, Some((id, 2)), b"junk")
            .await,
        Code::InvalidArgument,
        "not JSON",
    );
    assert_eq!(
        node.schemas.warnings(),
        1,
        "enforce refuses, it does not count warnings"
    );

    // policy none: anything goes; an admin rebinds to another subject.
    node.configure(topic, "other", "none", false).await;
    node.create(topic, "p6", Some(latest("other")))
        .await
        .expect("rebound by the admin");
    node.send(topic, "p1", producer, None, b"x")
        .await
        .expect("none checks nothing");
}

#[tokio::test]
async fn b9_a_partitioned_topic_s_schema_settings_apply_to_its_partitions() {
    let node = start(Arc::new(MemoryStreamStorage::new())).await;
    let schema = r#"{"type":"object","required":["id"],"properties":{"id":{"type":"integer"}}}"#;
    let orders = node
        .register("orders", "json_schema", schema)
        .await
        .expect("v1");
    let mut producers = Vec::new();
    for index in 0..3 {
        let partition = format!("/default/orders-part-{index}");
        let producer = node
            .create(&partition, &format!("p-{index}"), Some(latest("orders")))
            .await
            .expect("binds");
        producers.push((partition, format!("p-{index}"), producer));
    }
    // Producers of the partitions bound the partitioned topic.
    let config = node
        .registry()
        .get_topic_schema_config(GetTopicSchemaConfigRequest {
            topic_name: "/default/orders".into(),
        })
        .await
        .expect("the partitioned topic has the binding")
        .into_inner();
    assert_eq!(config.schema_subject, "orders");
    node.configure("/default/orders", "orders", "enforce", true)
        .await;
    let schema_ref = Some((orders.schema_id, 1));
    for (partition, name, producer) in &producers {
        node.send(partition, name, *producer, schema_ref, br#"{"id":7}"#)
            .await
            .expect("valid payload");
        assert_code(
            node.send(partition, name, *producer, schema_ref, br#"{"id":"x"}"#)
                .await,
            Code::InvalidArgument,
            "enforce",
        );
    }
}

#[tokio::test]
async fn b9_avro_payloads_are_decoded_when_validation_is_on() {
    let node = start(Arc::new(MemoryStreamStorage::new())).await;
    let topic = "/default/orders";
    let schema = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"},{"name":"item","type":"string"}]}"#;
    let orders = node.register("orders", "avro", schema).await.expect("avro");
    let evolved = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"},{"name":"item","type":"string"},{"name":"qty","type":"int","default":1}]}"#;
    assert_eq!(
        node.register("orders", "Avro", evolved)
            .await
            .expect("v2")
            .version,
        2
    );
    assert_code(
        node.register(
            "orders",
            "avro",
            r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}"#,
        )
        .await,
        Code::FailedPrecondition,
        "backward",
    );
    let producer = node
        .create(topic, "p", Some(latest("orders")))
        .await
        .expect("binds");
    node.configure(topic, "orders", "enforce", true).await;
    let id = orders.schema_id;
    // id 21 (zig-zag 42), item "ab" (length 2 → 4).
    node.send(topic, "p", producer, Some((id, 1)), &[42, 4, b'a', b'b'])
        .await
        .expect("a datum");
    assert_code(
        node.send(topic, "p", producer, Some((id, 1)), &[42, 4, b'a'])
            .await,
        Code::InvalidArgument,
        "Avro",
    );
    assert_code(
        node.send(topic, "p", producer, Some((id, 2)), &[42, 4, b'a', b'b'])
            .await,
        Code::InvalidArgument,
        "Avro",
    );
}

#[tokio::test]
async fn b8_topic_settings_made_through_one_node_apply_to_sends_on_another() {
    let storage: Arc<dyn StreamStorage> = Arc::new(MemoryStreamStorage::new());
    let (a, b) = (start(storage.clone()).await, start(storage).await);
    let topic = "/default/users";
    let users = a
        .register("users", "json_schema", USER_V1)
        .await
        .expect("on a");
    let producer = b
        .create(topic, "p1", Some(latest("users")))
        .await
        .expect("b sees the subject registered through a");
    b.send(topic, "p1", producer, None, b"{}")
        .await
        .expect("warn");
    assert_eq!(b.schemas.warnings(), 1);
    a.configure(topic, "users", "enforce", true).await;
    assert_code(
        b.send(topic, "p1", producer, None, b"{}").await,
        Code::InvalidArgument,
        "no schema_id",
    );
    b.send(
        topic,
        "p1",
        producer,
        Some((users.schema_id, 1)),
        br#"{"id":1}"#,
    )
    .await
    .expect("valid under enforce");
    a.configure(topic, "users", "none", false).await;
    b.send(topic, "p1", producer, None, b"junk")
        .await
        .expect("policy none set through a");
    assert_eq!(b.schemas.warnings(), 1);
}
