//! B10, TLS and mTLS with certificates made in the test: a client trusting the CA connects
//! and lookups answer `https://`; one trusting another CA does not; under mTLS a client
//! without a certificate, or with one from another CA, is refused. Real TCP on loopback.

mod support;

use std::sync::Arc;

use courier_broker::auth::{ApiKeys, AuthConfig, KeyEntry, Role, key_digest};
use courier_broker::directory::NodeUrls;
use courier_broker::server::{BrokerConfig, BrokerServer, OpenError};
use courier_broker::tls::ServerTls;
use courier_impls::grpc::proto::danube::discovery_client::DiscoveryClient;
use courier_impls::grpc::proto::danube::producer_service_client::ProducerServiceClient;
use courier_impls::grpc::proto::danube::topic_lookup_response::LookupType;
use courier_impls::grpc::proto::danube::{ProducerRequest, TopicLookupRequest};
use courier_impls::memory::MemoryStreamStorage;
use support::certs::{Leaf, TestCa, server_tls};
use support::node::Node;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

async fn connect(url: &str, trusted: &TestCa, identity: Option<&Leaf>) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(trusted.pem()))
        .domain_name("localhost");
    if let Some(leaf) = identity {
        tls = tls.identity(Identity::from_pem(&leaf.cert_pem, &leaf.key_pem));
    }
    Channel::from_shared(url.to_owned())
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// Creates a producer (so the topic exists) and looks the topic up.
async fn create_and_lookup(
    channel: &Channel,
    bearer: Option<&str>,
) -> Result<(LookupType, String), tonic::Status> {
    let mut create = tonic::Request::new(ProducerRequest {
        request_id: 1,
        producer_name: "p1".to_owned(),
        topic_name: "/default/tls".to_owned(),
        ..Default::default()
    });
    let mut lookup = tonic::Request::new(TopicLookupRequest {
        request_id: 2,
        topic: "/default/tls".to_owned(),
    });
    if let Some(bearer) = bearer {
        let value: tonic::metadata::MetadataValue<_> =
            format!("Bearer {bearer}").parse().expect("header");
        create.metadata_mut().insert("authorization", value.clone());
        lookup.metadata_mut().insert("authorization", value);
    }
    ProducerServiceClient::new(channel.clone())
        .create_producer(create)
        .await?;
    let answer = DiscoveryClient::new(channel.clone())
        .topic_lookup(lookup)
        .await?
        .into_inner();
    Ok((answer.response_type(), answer.connect_url))
}

#[tokio::test]
async fn a_client_trusting_the_ca_is_served_and_lookups_answer_https() {
    let ca = TestCa::new("broker CA");
    let node = Node::start("https", |config| config.tls = Some(server_tls(&ca, None))).await;
    assert!(node.url.starts_with("https://127.0.0.1:"));
    let channel = connect(&node.url, &ca, None).await.expect("trusted");
    let (kind, url) = create_and_lookup(&channel, None).await.expect("served");
    assert_eq!(kind, LookupType::Connect);
    assert_eq!(url, node.url, "the lookup names the https URL");

    let other = TestCa::new("someone else's CA");
    let refused = match connect(&node.url, &other, None).await {
        Err(_) => true,
        Ok(channel) => create_and_lookup(&channel, None).await.is_err(),
    };
    assert!(refused, "a client trusting another CA was served");
    node.stop().await;
}

#[tokio::test]
async fn mutual_tls_needs_a_client_certificate_from_the_client_ca() {
    let ca = TestCa::new("broker CA");
    let clients = TestCa::new("client CA");
    let node = Node::start("https", |config| {
        config.tls = Some(server_tls(&ca, Some(&clients)))
    })
    .await;
    let good = clients.client("orders-app");
    let channel = connect(&node.url, &ca, Some(&good)).await.expect("mTLS");
    let (_, url) = create_and_lookup(&channel, None).await.expect("served");
    assert!(url.starts_with("https://"), "{url}");

    // TLS 1.3 may finish the client's side of the handshake before the server refuses the
    // certificate, so the refusal shows on connect or on the first call.
    for identity in [None, Some(TestCa::new("stranger CA").client("intruder"))] {
        let refused = match connect(&node.url, &ca, identity.as_ref()).await {
            Err(_) => true,
            Ok(channel) => create_and_lookup(&channel, None).await.is_err(),
        };
        assert!(
            refused,
            "served a client with {:?} certificate",
            identity.is_some()
        );
    }
    node.stop().await;
}

#[tokio::test]
async fn tokens_work_over_tls_without_allowing_plaintext() {
    let ca = TestCa::new("broker CA");
    let key = "ck_tls_key_31f9";
    let node = Node::start("https", |config| {
        config.tls = Some(server_tls(&ca, None));
        let keys = ApiKeys::new(vec![KeyEntry {
            sha256: key_digest(key),
            principal: "app".to_owned(),
            principal_type: "service".to_owned(),
            roles: vec![Role::Produce],
        }])
        .expect("keys");
        config.auth = Some(AuthConfig::new(keys, b"secret".to_vec()));
    })
    .await;
    let channel = connect(&node.url, &ca, None).await.expect("trusted");
    let refused = create_and_lookup(&channel, None)
        .await
        .expect_err("no bearer");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    create_and_lookup(&channel, Some(key))
        .await
        .expect("key as bearer");
    node.stop().await;
}

#[tokio::test]
async fn inconsistent_tls_settings_are_refused_when_the_node_opens() {
    let ca = TestCa::new("broker CA");
    let open = |url: &str, tls: Option<ServerTls>| {
        let mut config = BrokerConfig::new(NodeUrls::same(url).expect("url"));
        config.tls = tls;
        BrokerServer::open(Arc::new(MemoryStreamStorage::new()), config)
    };
    let error = open("http://127.0.0.1:1", Some(server_tls(&ca, None)))
        .await
        .expect_err("http under TLS");
    assert!(matches!(error, OpenError::Insecure(_)), "{error}");
    let error = open("https://127.0.0.1:1", None)
        .await
        .expect_err("https without TLS");
    assert!(matches!(error, OpenError::Insecure(_)), "{error}");
    let mut garbage = server_tls(&ca, None);
    garbage.key_pem = b"not a key".to_vec();
    let error = open("https://127.0.0.1:1", Some(garbage))
        .await
        .expect_err("bad key");
    assert!(matches!(error, OpenError::Tls(_)), "{error}");
}
