//! B10's shared pieces: two API keys with their roles, the auth settings, and one call of
//! each kind with or without a bearer.

use courier_broker::auth::{ApiKeys, AuthConfig, KeyEntry, Role, key_digest};
use courier_impls::grpc::proto::danube::auth_service_client::AuthServiceClient;
use courier_impls::grpc::proto::danube::discovery_client::DiscoveryClient;
use courier_impls::grpc::proto::danube::producer_service_client::ProducerServiceClient;
use courier_impls::grpc::proto::danube::{AuthRequest, ProducerRequest, TopicLookupRequest};
use tonic::Code;
use tonic::transport::Channel;

use super::node::Node;

pub const PRODUCER_KEY: &str = "ck_producer_5f1e7a3c9b";
pub const CONSUMER_KEY: &str = "ck_consumer_0d4b8e2f6a";
pub const SECRET: &[u8] = b"signing-secret-7c21a9";

pub fn keys() -> ApiKeys {
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

pub fn auth(accept_key: bool) -> AuthConfig {
    let mut auth = AuthConfig::new(keys(), SECRET.to_vec());
    auth.accept_api_key_as_bearer = accept_key;
    auth.allow_plaintext = true;
    auth
}

pub async fn channel(node: &Node) -> Channel {
    Channel::from_shared(node.url.clone())
        .expect("url")
        .connect()
        .await
        .expect("connect")
}

pub fn with_bearer<T>(message: T, bearer: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(bearer) = bearer {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {bearer}").parse().expect("header"),
        );
    }
    request
}

pub async fn lookup(channel: &Channel, bearer: Option<&str>) -> Code {
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

pub async fn create_producer(channel: &Channel, bearer: &str) -> Code {
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

pub async fn authenticate(channel: &Channel, key: &str) -> Result<String, tonic::Status> {
    AuthServiceClient::new(channel.clone())
        .authenticate(AuthRequest {
            api_key: key.to_owned(),
        })
        .await
        .map(|response| response.into_inner().token)
}
