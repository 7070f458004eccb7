//! B10/B11 through the Rust client: over TLS (certificates made in the test) with an API key
//! exchanged for a token, and over mutual TLS; a client trusting another CA gets nowhere.
//! Real TCP on loopback.

mod support;

use std::time::Duration;

use courier_broker::auth::{ApiKeys, AuthConfig, KeyEntry, Role, key_digest};
use courier_broker::client::{BrokerClient, Tls};
use courier_impls::retry::LinearBackoff;
use courier_traits::error::{Classify, ErrorClass};
use futures::StreamExt;
use support::certs::{TestCa, server_tls};
use support::node::Node;

const KEY: &str = "ck_client_tls_77aa";

fn auth() -> AuthConfig {
    let keys = ApiKeys::new(vec![KeyEntry {
        sha256: key_digest(KEY),
        principal: "round-trip".to_owned(),
        principal_type: "service".to_owned(),
        roles: vec![Role::Produce, Role::Consume],
    }])
    .expect("keys");
    AuthConfig::new(keys, b"client-tls-secret".to_vec())
}

/// Produces one message and receives it back through `client`.
async fn round_trip(client: &BrokerClient, topic: &str) {
    let producer = client
        .producer(topic)
        .name("p1")
        .reliable()
        .create()
        .await
        .expect("producer");
    let mut consumer = client
        .consumer(topic)
        .name("c1")
        .subscription("s")
        .shared()
        .subscribe()
        .await
        .expect("consumer");
    producer.send("over tls").await.expect("sent");
    let message = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("in time")
        .expect("a message")
        .expect("no error");
    assert_eq!(&message.payload()[..], b"over tls");
    message.ack().await.expect("ack");
    consumer.close().await;
    producer.close().await;
}

#[tokio::test]
async fn an_api_key_over_tls_round_trips() {
    let ca = TestCa::new("broker CA");
    let node = Node::start("https", |config| {
        config.tls = Some(server_tls(&ca, None));
        config.auth = Some(auth());
    })
    .await;
    let client = BrokerClient::builder()
        .service_url(&node.url)
        .tls(Tls::ca_pem(ca.pem()))
        .api_key(KEY)
        .build()
        .await
        .expect("client");
    round_trip(&client, "/default/tls-key").await;

    let stranger = BrokerClient::builder()
        .service_url(&node.url)
        .tls(Tls::ca_pem(TestCa::new("other CA").pem()))
        .api_key(KEY)
        .retry(LinearBackoff::new(Duration::from_millis(10)))
        .build()
        .await
        .expect("client");
    let refused = stranger
        .producer("/default/tls-key")
        .name("p2")
        .create()
        .await;
    assert!(refused.is_err(), "a client trusting another CA was served");
    node.stop().await;
}

#[tokio::test]
async fn mutual_tls_round_trips_with_the_clients_certificate() {
    let ca = TestCa::new("broker CA");
    let clients = TestCa::new("client CA");
    let node = Node::start("https", |config| {
        config.tls = Some(server_tls(&ca, Some(&clients)));
    })
    .await;
    let identity = clients.client("orders-app");
    let client = BrokerClient::builder()
        .service_url(&node.url)
        .tls(Tls::ca_pem(ca.pem()).identity_pem(identity.cert_pem, identity.key_pem))
        .build()
        .await
        .expect("client");
    round_trip(&client, "/default/mtls").await;
    node.stop().await;
}

/// Finding 6: a client with TLS never dials `http://`, so its key or token cannot travel in
/// clear (here the service URL; a lookup redirect naming `http://` takes the same path). The
/// plaintext node accepts the key, so before the fix the producer was created.
#[tokio::test]
async fn a_client_with_tls_refuses_an_http_url_and_keeps_its_key() {
    let node = Node::start("http", |config| {
        let mut auth = auth();
        auth.allow_plaintext = true;
        config.auth = Some(auth);
    })
    .await;
    let ca = TestCa::new("broker CA");
    let client = BrokerClient::builder()
        .service_url(&node.url)
        .tls(Tls::ca_pem(ca.pem()))
        .api_key(KEY)
        .retry(LinearBackoff::new(Duration::from_millis(10)))
        .build()
        .await
        .expect("client");
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        client.producer("/default/plain").name("p1").create(),
    )
    .await
    .expect("refused at once, not retried");
    let error = refused.expect_err("a client with TLS dialled http://");
    let text = error.to_string();
    assert!(text.contains(&node.url), "the error names the URL: {text}");
    assert!(text.contains("plaintext"), "the error says why: {text}");
    assert_eq!(error.class(), ErrorClass::Permanent, "{text}");
    node.stop().await;
}
