//! B10, auth: API key → token, bearer checks on every other RPC, roles, key as bearer; auth
//! over plaintext refused unless allowed. Real TCP on loopback. (No secret in the logs:
//! `auth_logs.rs`.)

mod support;

use std::sync::Arc;
use std::time::Duration;

use courier_broker::auth::TokenSigner;
use courier_broker::directory::NodeUrls;
use courier_broker::producer::producer_id;
use courier_broker::server::{BrokerConfig, BrokerServer, OpenError};
use courier_broker::topic::TopicName;
use courier_impls::grpc::proto::courier_broker::produce_stream_service_client::ProduceStreamServiceClient;
use courier_impls::grpc::proto::danube::{MsgId, StreamMessage};
use courier_impls::memory::MemoryStreamStorage;
use support::auth::{
    CONSUMER_KEY, PRODUCER_KEY, SECRET, auth, authenticate, channel, create_producer, keys, lookup,
    with_bearer,
};
use support::node::Node;
use tonic::Code;

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
