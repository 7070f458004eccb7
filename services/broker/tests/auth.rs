//! B10, auth: API key → token, bearer checks on every other RPC, roles, key as bearer, and
//! no secret in the logs; auth over plaintext refused unless allowed. Real TCP on loopback.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use courier_broker::auth::{ApiKeys, AuthConfig, KeyEntry, Role, TokenSigner, key_digest};
use courier_broker::directory::NodeUrls;
use courier_broker::producer::producer_id;
use courier_broker::server::{BrokerConfig, BrokerServer, OpenError};
use courier_broker::topic::TopicName;
use courier_impls::grpc::proto::courier_broker::produce_stream_service_client::ProduceStreamServiceClient;
use courier_impls::grpc::proto::danube::auth_service_client::AuthServiceClient;
use courier_impls::grpc::proto::danube::discovery_client::DiscoveryClient;
use courier_impls::grpc::proto::danube::producer_service_client::ProducerServiceClient;
use courier_impls::grpc::proto::danube::{
    AuthRequest, MsgId, ProducerRequest, StreamMessage, TopicLookupRequest,
};
use courier_impls::memory::MemoryStreamStorage;
use support::node::Node;
use tonic::Code;
use tonic::transport::Channel;

const PRODUCER_KEY: &str = "ck_producer_5f1e7a3c9b";
const CONSUMER_KEY: &str = "ck_consumer_0d4b8e2f6a";
const SECRET: &[u8] = b"signing-secret-7c21a9";

fn keys() -> ApiKeys {
    let entry = |key: &str, principal: &str, roles: Vec<Role>| KeyEntry {
        sha256: key_digest(key),
        principal: principal.to_owned(),
        principal_type: "service".to_owned(),
        roles,
    };
    ApiKeys::new(vec![
        entry(PRODUCER_KEY, "orders-writer", vec![Role::Produce]),
        entry(CONSUMER_KEY, "orders-reader", vec![Role::Consume]),
    ])
    .expect("keys")
}

fn auth(accept_key: bool) -> AuthConfig {
    let mut auth = AuthConfig::new(keys(), SECRET.to_vec());
    auth.accept_api_key_as_bearer = accept_key;
    auth.allow_plaintext = true;
    auth
}

async fn channel(node: &Node) -> Channel {
    Channel::from_shared(node.url.clone())
        .expect("url")
        .connect()
        .await
        .expect("connect")
}

fn with_bearer<T>(message: T, bearer: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(bearer) = bearer {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {bearer}").parse().expect("header"),
        );
    }
    request
}

async fn lookup(channel: &Channel, bearer: Option<&str>) -> Code {
    let request = with_bearer(
        TopicLookupRequest {
            request_id: 1,
            topic: "/default/missing".to_owned(),
        },
        bearer,
    );
    match DiscoveryClient::new(channel.clone())
        .topic_lookup(request)
        .await
    {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

async fn create_producer(channel: &Channel, bearer: &str) -> Code {
    let request = with_bearer(
        ProducerRequest {
            request_id: 1,
            producer_name: "p1".to_owned(),
            topic_name: "/default/orders".to_owned(),
            ..Default::default()
        },
        Some(bearer),
    );
    match ProducerServiceClient::new(channel.clone())
        .create_producer(request)
        .await
    {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

async fn authenticate(channel: &Channel, key: &str) -> Result<String, tonic::Status> {
    AuthServiceClient::new(channel.clone())
        .authenticate(AuthRequest {
            api_key: key.to_owned(),
        })
        .await
        .map(|response| response.into_inner().token)
}

#[tokio::test]
async fn every_rpc_but_authenticate_needs_a_valid_bearer() {
    let node = Node::start("http", |config| config.auth = Some(auth(true))).await;
    let channel = channel(&node).await;
    // Past the guard an unknown topic is NotFound; before it, Unauthenticated.
    assert_eq!(lookup(&channel, None).await, Code::Unauthenticated, "none");
    assert_eq!(
        lookup(&channel, Some("not-a-key")).await,
        Code::Unauthenticated,
        "unknown key"
    );
    assert_eq!(
        lookup(&channel, Some("a.b.c")).await,
        Code::Unauthenticated,
        "malformed token"
    );
    let bad = authenticate(&channel, "not-a-key")
        .await
        .expect_err("bad key");
    assert_eq!(bad.code(), Code::Unauthenticated);
    let token = authenticate(&channel, PRODUCER_KEY)
        .await
        .expect("good key");
    assert_eq!(lookup(&channel, Some(&token)).await, Code::NotFound);
    // Another signer's token, and ours issued two hours ago (expired after one).
    let foreign = TokenSigner::new(
        b"other".to_vec(),
        "courier-broker",
        Duration::from_secs(3600),
    );
    let principal = keys().principal(PRODUCER_KEY).cloned().expect("principal");
    assert_eq!(
        lookup(&channel, Some(&foreign.issue(&principal, now()))).await,
        Code::Unauthenticated,
        "foreign signature"
    );
    let ours = TokenSigner::new(SECRET.to_vec(), "courier-broker", Duration::from_secs(3600));
    assert_eq!(
        lookup(&channel, Some(&ours.issue(&principal, now() - 7200))).await,
        Code::Unauthenticated,
        "expired"
    );
    assert_eq!(
        lookup(&channel, Some(&ours.issue(&principal, now()))).await,
        Code::NotFound,
        "the same signer, fresh"
    );
    node.stop().await;
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

#[tokio::test]
async fn roles_decide_and_the_key_itself_is_a_bearer_when_allowed() {
    let node = Node::start("http", |config| config.auth = Some(auth(true))).await;
    let channel = channel(&node).await;
    // danube-client's with_api_key sends the key itself.
    assert_eq!(lookup(&channel, Some(CONSUMER_KEY)).await, Code::NotFound);
    assert_eq!(
        create_producer(&channel, CONSUMER_KEY).await,
        Code::PermissionDenied,
        "a consumer may not produce"
    );
    let consumer_token = authenticate(&channel, CONSUMER_KEY).await.expect("token");
    assert_eq!(
        create_producer(&channel, &consumer_token).await,
        Code::PermissionDenied
    );
    let producer_token = authenticate(&channel, PRODUCER_KEY).await.expect("token");
    assert_eq!(create_producer(&channel, &producer_token).await, Code::Ok);
    assert_eq!(create_producer(&channel, PRODUCER_KEY).await, Code::Ok);
    node.stop().await;

    let strict = Node::start("http", |config| config.auth = Some(auth(false))).await;
    let channel = self::channel(&strict).await;
    assert_eq!(
        lookup(&channel, Some(CONSUMER_KEY)).await,
        Code::Unauthenticated,
        "keys are no bearers with accept_api_key_as_bearer off"
    );
    let token = authenticate(&channel, CONSUMER_KEY).await.expect("token");
    assert_eq!(lookup(&channel, Some(&token)).await, Code::NotFound);
    strict.stop().await;
}

/// Courier's send stream is a producer's call: the `produce` role opens it, a consumer's
/// credential does not, and each message is answered as its SendMessage would be.
#[tokio::test]
async fn the_send_stream_needs_the_produce_role() {
    let node = Node::start("http", |config| config.auth = Some(auth(true))).await;
    let channel = channel(&node).await;
    assert_eq!(create_producer(&channel, PRODUCER_KEY).await, Code::Ok);
    let topic = TopicName::new("/default/orders").expect("valid");
    let message = StreamMessage {
        request_id: 7,
        msg_id: Some(MsgId {
            producer_id: producer_id(&topic, "p1"),
            topic_name: topic.to_string(),
            ..Default::default()
        }),
        payload: "m".into(),
        producer_name: "p1".to_owned(),
        ..Default::default()
    };
    let open = |bearer: &'static str| {
        let channel = channel.clone();
        let message = message.clone();
        async move {
            ProduceStreamServiceClient::new(channel)
                .send_messages(with_bearer(
                    futures::stream::iter(vec![message]),
                    Some(bearer),
                ))
                .await
        }
    };
    let refused = open(CONSUMER_KEY)
        .await
        .expect_err("a consumer may not produce");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let mut outcomes = open(PRODUCER_KEY).await.expect("opened").into_inner();
    let outcome = outcomes
        .message()
        .await
        .expect("an answer")
        .expect("one per message");
    assert_eq!((outcome.request_id, outcome.code), (7, 0), "{outcome:?}");
    node.stop().await;
}

#[tokio::test]
async fn auth_over_plaintext_is_refused_unless_allowed() {
    let mut config = BrokerConfig::new(NodeUrls::same("http://127.0.0.1:6650").expect("url"));
    let mut plain = auth(true);
    plain.allow_plaintext = false;
    config.auth = Some(plain);
    let error = BrokerServer::open(Arc::new(MemoryStreamStorage::new()), config)
        .await
        .expect_err("credentials in the clear");
    assert!(matches!(error, OpenError::Insecure(_)), "{error}");
    assert!(error.to_string().contains("allow_plaintext"), "{error}");
}

/// A log sink for one test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn no_key_token_or_secret_reaches_the_logs() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    // Current-thread runtime: the server's tasks log on this thread, into this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);
    let node = Node::start("http", |config| config.auth = Some(auth(true))).await;
    let channel = channel(&node).await;
    let token = authenticate(&channel, PRODUCER_KEY).await.expect("token");
    let _ = authenticate(&channel, "wrong-key-9a8b7c").await;
    assert_eq!(lookup(&channel, Some(&token)).await, Code::NotFound);
    assert_eq!(
        create_producer(&channel, CONSUMER_KEY).await,
        Code::PermissionDenied
    );
    assert_eq!(
        lookup(&channel, Some("wrong-key-9a8b7c")).await,
        Code::Unauthenticated
    );
    let forged = format!("{token}x");
    assert_eq!(lookup(&channel, Some(&forged)).await, Code::Unauthenticated);
    node.stop().await;
    let logs = String::from_utf8_lossy(&captured.0.lock().expect("logs")).into_owned();
    assert!(
        logs.contains("call refused"),
        "the refusals were logged:\n{logs}"
    );
    let signature = token.rsplit('.').next().expect("signature");
    for secret in [
        PRODUCER_KEY,
        CONSUMER_KEY,
        "wrong-key-9a8b7c",
        &String::from_utf8_lossy(SECRET),
        &token,
        signature,
    ] {
        assert!(!logs.contains(secret), "{secret:?} logged:\n{logs}");
    }
}
