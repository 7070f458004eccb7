//! B2 for the schema registry: arbitrary subjects, types, modes and definitions (JSON-ish
//! text and raw bytes) never panic and are answered with a status the spec names: accepted,
//! `InvalidArgument`, `NotFound` or `FailedPrecondition`.

use std::sync::Arc;

use courier_broker::schema_registry::{RegistryService, SchemaRegistry};
use courier_impls::grpc::proto::danube_schema::schema_registry_server::SchemaRegistry as _;
use courier_impls::grpc::proto::danube_schema::{
    CheckCompatibilityRequest, GetSchemaRequest, RegisterSchemaRequest,
};
use courier_impls::memory::MemoryStreamStorage;
use courier_traits::storage::StreamStorage;
use proptest::prelude::*;
use tonic::{Code, Request};

fn service(runtime: &tokio::runtime::Runtime) -> RegistryService {
    runtime.block_on(async {
        let storage: Arc<dyn StreamStorage> = Arc::new(MemoryStreamStorage::new());
        let registry = SchemaRegistry::open(storage).await.expect("registry");
        RegistryService::new(Arc::new(registry))
    })
}

fn definition() -> impl Strategy<Value = Vec<u8>> {
    let json_words = prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"type\"",
        "\"object\"",
        "\"string\"",
        "\"integer\"",
        "\"properties\"",
        "\"required\"",
        "\"$ref\"",
        "\"#\"",
        "\"#/a\"",
        "\"items\"",
        "\"enum\"",
        "\"anyOf\"",
        "\"additionalProperties\"",
        "false",
        "true",
        "1",
        "-1e400",
        "\"record\"",
        "\"fields\"",
        "\"name\"",
        "null",
    ]);
    prop_oneof![
        prop::collection::vec(json_words, 0..40).prop_map(|words| words.concat().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..64),
        Just(br##"{"type":"object","properties":{"a":{"$ref":"#"}}}"##.to_vec()),
    ]
}

fn allowed(result: Result<(), tonic::Status>) -> Result<(), TestCaseError> {
    match result {
        Ok(()) => Ok(()),
        Err(status) => {
            prop_assert!(
                matches!(
                    status.code(),
                    Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition
                ),
                "{status:?}"
            );
            Ok(())
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn registry_input_never_panics_and_is_answered_by_the_spec(
        subject in prop_oneof![Just("s".to_owned()), ".{0,12}"],
        schema_type in prop_oneof![
            Just("json_schema".to_owned()), Just("avro".to_owned()), Just("protobuf".to_owned()),
            Just("string".to_owned()), ".{0,8}"
        ],
        mode in prop::option::of(prop_oneof![Just("FULL".to_owned()), Just("none".to_owned()), ".{0,6}"]),
        first in definition(),
        second in definition(),
        schema_id in 0u64..4,
        version in prop::option::of(0u32..4),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let service = service(&runtime);
        runtime.block_on(async {
            for definition in [first, second.clone()] {
                let registered = service
                    .register_schema(Request::new(RegisterSchemaRequest {
                        subject: subject.clone(),
                        schema_type: schema_type.clone(),
                        schema_definition: definition,
                        ..RegisterSchemaRequest::default()
                    }))
                    .await;
                allowed(registered.map(|_| ()))?;
            }
            let checked = service
                .check_compatibility(Request::new(CheckCompatibilityRequest {
                    subject: subject.clone(),
                    new_schema_definition: second,
                    schema_type: schema_type.clone(),
                    compatibility_mode: mode,
                }))
                .await;
            allowed(checked.map(|_| ()))?;
            let got = service
                .get_schema(Request::new(GetSchemaRequest { schema_id, version }))
                .await;
            allowed(got.map(|_| ()))
        })?;
    }
}

#[tokio::test]
async fn oversized_metadata_is_invalid_argument() {
    let storage: Arc<dyn StreamStorage> = Arc::new(MemoryStreamStorage::new());
    let service = RegistryService::new(Arc::new(
        SchemaRegistry::open(storage).await.expect("registry"),
    ));
    for (description, tags) in [
        ("x".repeat(5_000), vec![]),
        (String::new(), vec!["t".to_owned(); 65]),
        (String::new(), vec!["t".repeat(300)]),
    ] {
        let status = service
            .register_schema(Request::new(RegisterSchemaRequest {
                subject: "s".into(),
                schema_type: "string".into(),
                description,
                tags,
                ..RegisterSchemaRequest::default()
            }))
            .await
            .expect_err("too large");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }
}
