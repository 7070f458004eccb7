//! The client's schema registry (`client.schemas()`) and producers with schema references,
//! against a broker served in-process: registration with its metadata, reads, versions,
//! compatibility checks and modes; `SchemaRef::latest/pinned/min` resolved once and stamped
//! on every stored message; the broker's enforce policy refusing what the schema does not
//! accept.

mod support;

use std::sync::Arc;
use std::time::Duration;

use courier_broker::client::{BrokerClient, BrokerError, SchemaRef};
use courier_broker::directory::NodeUrls;
use courier_broker::schema_registry::{CompatibilityMode, SchemaType, ValidationPolicy};
use courier_broker::server::{BrokerConfig, BrokerServer};
use courier_impls::grpc::InProcessNetwork;
use courier_impls::memory::MemoryStreamStorage;
use courier_impls::retry::LinearBackoff;
use courier_traits::storage::StreamStorage;
use tokio::sync::oneshot;
use tonic::Code;

const HERE: &str = "http://broker.test:6650";
const V1: &str = r#"{"type":"object","properties":{"id":{"type":"integer"}},"required":["id"]}"#;
const V2: &str = r#"{"type":"object","properties":{"id":{"type":"integer"},"name":{"type":"string"}},"required":["id"]}"#;
const NEEDS_EMAIL: &str = r#"{"type":"object","properties":{"id":{"type":"integer"},"email":{"type":"string"}},"required":["id","email"]}"#;

struct Broker {
    storage: Arc<dyn StreamStorage>,
    schemas: Arc<courier_broker::schema_registry::TopicSchemas>,
    client: BrokerClient,
    _stop: oneshot::Sender<()>,
}

async fn start() -> Broker {
    let storage: Arc<dyn StreamStorage> = Arc::new(MemoryStreamStorage::new());
    let network = InProcessNetwork::new();
    let config = BrokerConfig::new(NodeUrls::same(HERE).expect("valid"));
    let server = BrokerServer::open(storage.clone(), config)
        .await
        .expect("open");
    let schemas = server.schemas().clone();
    let listener = network.listen(HERE).expect("listen");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.serve_with_incoming(listener, async {
        let _ = stopped.await;
    }));
    let client = BrokerClient::builder()
        .service_url(HERE)
        .in_process(network)
        .retry(LinearBackoff::new(Duration::from_millis(10)))
        .build()
        .await
        .expect("client");
    Broker {
        storage,
        schemas,
        client,
        _stop: stop,
    }
}

fn code(error: &BrokerError) -> Option<Code> {
    error.code()
}

/// (schema_id, schema_version) of every message stored on `topic`.
async fn stamped(storage: &Arc<dyn StreamStorage>, topic: &str) -> Vec<(Option<u64>, Option<u32>)> {
    support::log::stored(storage.as_ref(), topic)
        .await
        .iter()
        .map(|message| (message.schema_id, message.schema_version))
        .collect()
}

#[tokio::test]
async fn schemas_register_read_check_and_set_modes() {
    let broker = start().await;
    let schemas = broker.client.schemas();
    let first = schemas
        .register("users")
        .json_schema(V1)
        .description("users v1")
        .created_by("tests")
        .tags(["pii", "core"])
        .execute()
        .await
        .expect("register");
    assert_eq!(
        (first.schema_id, first.version, first.is_new_version),
        (1, 1, true)
    );
    let again = schemas
        .register("users")
        .json_schema(V1)
        .execute()
        .await
        .expect("again");
    assert_eq!((again.version, again.is_new_version), (1, false));
    schemas
        .register("users")
        .json_schema(V2)
        .execute()
        .await
        .expect("v2");

    let info = schemas.get(first.schema_id).await.expect("get");
    assert_eq!((info.version, &info.definition[..]), (2, V2.as_bytes()));
    let v1 = schemas.get_version(first.schema_id, 1).await.expect("v1");
    assert_eq!(
        (
            &v1.definition[..],
            v1.description.as_str(),
            v1.created_by.as_str(),
            v1.tags.clone()
        ),
        (
            V1.as_bytes(),
            "users v1",
            "tests",
            vec!["pii".to_owned(), "core".to_owned()]
        )
    );
    assert_eq!(schemas.latest("users").await.expect("latest").version, 2);
    assert_eq!(
        schemas.versions("users").await.expect("versions"),
        vec![1, 2]
    );

    let fine = schemas
        .check_compatibility("users", SchemaType::JsonSchema, V2, None)
        .await
        .expect("check");
    assert!(fine.is_compatible && fine.errors.is_empty());
    let broken = schemas
        .check_compatibility("users", SchemaType::JsonSchema, NEEDS_EMAIL, None)
        .await
        .expect("check");
    assert!(!broken.is_compatible);
    assert!(
        broken.errors.iter().any(|e| e.contains("email")),
        "{:?}",
        broken.errors
    );
    let overridden = schemas
        .check_compatibility(
            "users",
            SchemaType::JsonSchema,
            NEEDS_EMAIL,
            Some(CompatibilityMode::None),
        )
        .await
        .expect("check");
    assert!(overridden.is_compatible);

    let refused = schemas
        .register("users")
        .json_schema(NEEDS_EMAIL)
        .execute()
        .await;
    let error = refused.expect_err("incompatible");
    assert_eq!(code(&error), Some(Code::FailedPrecondition), "{error}");
    schemas
        .set_mode("users", CompatibilityMode::None)
        .await
        .expect("mode");
    assert_eq!(
        schemas
            .latest("users")
            .await
            .expect("latest")
            .compatibility_mode,
        "NONE"
    );
    let third = schemas
        .register("users")
        .json_schema(NEEDS_EMAIL)
        .execute()
        .await
        .expect("v3");
    assert_eq!(third.version, 3);

    let missing = schemas.latest("ghost").await.expect_err("unknown");
    assert_eq!(code(&missing), Some(Code::NotFound));
    let no_definition = schemas
        .register("users")
        .execute()
        .await
        .expect_err("no definition");
    assert!(
        matches!(no_definition, BrokerError::InvalidInput(_)),
        "{no_definition}"
    );
}

#[tokio::test]
async fn producers_resolve_their_schema_once_and_stamp_every_message() {
    let broker = start().await;
    let schemas = broker.client.schemas();
    let id = schemas
        .register("users")
        .json_schema(V1)
        .execute()
        .await
        .expect("v1")
        .schema_id;
    schemas
        .register("users")
        .json_schema(V2)
        .execute()
        .await
        .expect("v2");

    let topic = "/default/users";
    let latest = broker
        .client
        .producer(topic)
        .name("latest")
        .reliable()
        .schema(SchemaRef::latest("users"))
        .create()
        .await
        .expect("latest");
    let pinned = broker
        .client
        .producer(topic)
        .name("pinned")
        .reliable()
        .schema(SchemaRef::pinned("users", 1))
        .create()
        .await
        .expect("pinned");
    let at_least = broker
        .client
        .producer(topic)
        .name("min")
        .reliable()
        .schema(SchemaRef::min("users", 2))
        .create()
        .await
        .expect("min");
    // A version registered after create does not change what a producer stamps.
    schemas.register("users").json_schema(r#"{"type":"object","properties":{"id":{"type":"integer"},"x":{"type":"string"}},"required":["id"]}"#).execute().await.expect("v3");
    latest.send(r#"{"id":1}"#).await.expect("send");
    latest.send(r#"{"id":2}"#).await.expect("send");
    pinned.send(r#"{"id":3}"#).await.expect("send");
    at_least.send(r#"{"id":4}"#).await.expect("send");
    assert_eq!(
        stamped(&broker.storage, topic).await,
        vec![
            (Some(id), Some(2)),
            (Some(id), Some(2)),
            (Some(id), Some(1)),
            (Some(id), Some(2))
        ]
    );

    for reference in [SchemaRef::pinned("users", 9), SchemaRef::min("users", 4)] {
        let error = broker
            .client
            .producer(topic)
            .name("bad")
            .schema(reference.clone())
            .create()
            .await
            .expect_err("no such version");
        assert!(
            matches!(error, BrokerError::InvalidInput(_)),
            "{reference:?}: {error}"
        );
    }
    let unknown = broker
        .client
        .producer("/default/other")
        .name("p")
        .schema(SchemaRef::latest("ghost"))
        .create()
        .await
        .expect_err("unknown subject");
    assert_eq!(code(&unknown), Some(Code::NotFound), "{unknown}");

    // The broker enforces the bound schema once told to.
    broker
        .schemas
        .registry()
        .configure_topic(topic, Some("users"), ValidationPolicy::Enforce, true)
        .await
        .expect("enforce");
    latest
        .send(r#"{"id":5,"name":"ann"}"#)
        .await
        .expect("valid");
    let refused = latest
        .send(r#"{"name":"no id"}"#)
        .await
        .expect_err("invalid payload");
    assert_eq!(code(&refused), Some(Code::InvalidArgument), "{refused}");
    let plain = broker
        .client
        .producer(topic)
        .name("plain")
        .reliable()
        .create()
        .await
        .expect("plain");
    let unstamped = plain.send(r#"{"id":6}"#).await.expect_err("no schema id");
    assert_eq!(code(&unstamped), Some(Code::InvalidArgument), "{unstamped}");
}
