//! B11, tokens: an API key is exchanged once, the token reused until 80 % of its life has
//! passed (tokio's paused clock), fetched anew once when a call answers `Unauthenticated`;
//! a fixed token is never refreshed. A real `AuthLayer` and `Authenticator` in front of a
//! discovery service that can be told to refuse the next call.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use courier_impls::grpc::InProcessNetwork;
use courier_impls::grpc::proto::danube::auth_service_server::{AuthService, AuthServiceServer};
use courier_impls::grpc::proto::danube::discovery_server::{Discovery, DiscoveryServer};
use courier_impls::grpc::proto::danube::{
    AuthRequest, AuthResponse, TopicLookupRequest, TopicLookupResponse, TopicPartitionsResponse,
};
use tokio::sync::oneshot;
use tonic::{Code, Request, Response, Status};

use super::super::{BrokerClient, BrokerError};
use crate::auth::{
    ApiKeys, AuthConfig, AuthLayer, Authenticator, Guard, KeyEntry, Role, key_digest,
};

const URL: &str = "http://auth.test:6650";
const KEY: &str = "ck_client_test_4e1d";

#[derive(Default)]
struct Counters {
    authenticated: AtomicU64,
    partitions: AtomicU64,
    refuse_next: AtomicBool,
}

#[derive(Clone)]
struct CountingAuth(Authenticator, Arc<Counters>);

#[tonic::async_trait]
impl AuthService for CountingAuth {
    async fn authenticate(
        &self,
        request: Request<AuthRequest>,
    ) -> Result<Response<AuthResponse>, Status> {
        self.1.authenticated.fetch_add(1, Ordering::SeqCst);
        self.0.authenticate(request).await
    }
}

/// Lists no partitions (the client then reports `NoSuchTopic`: the call got through), or
/// refuses once with `Unauthenticated` when told to.
#[derive(Clone)]
struct Partitions(Arc<Counters>);

#[tonic::async_trait]
impl Discovery for Partitions {
    async fn topic_lookup(
        &self,
        _: Request<TopicLookupRequest>,
    ) -> Result<Response<TopicLookupResponse>, Status> {
        Err(Status::not_found("no topics here"))
    }

    async fn topic_partitions(
        &self,
        request: Request<TopicLookupRequest>,
    ) -> Result<Response<TopicPartitionsResponse>, Status> {
        self.0.partitions.fetch_add(1, Ordering::SeqCst);
        if self.0.refuse_next.swap(false, Ordering::SeqCst) {
            return Err(Status::unauthenticated("token no longer accepted"));
        }
        Ok(Response::new(TopicPartitionsResponse {
            request_id: request.into_inner().request_id,
            partitions: Vec::new(),
        }))
    }
}

struct Server {
    network: InProcessNetwork,
    counters: Arc<Counters>,
    guard: Arc<Guard>,
    _stop: oneshot::Sender<()>,
}

fn start() -> Server {
    let keys = ApiKeys::new(vec![KeyEntry {
        sha256: key_digest(KEY),
        principal: "client-test".to_owned(),
        principal_type: "service".to_owned(),
        roles: vec![Role::Consume],
    }])
    .expect("keys");
    let mut config = AuthConfig::new(keys, b"client-test-secret".to_vec());
    config.allow_plaintext = true;
    let guard = Arc::new(Guard::new(config));
    let counters = Arc::new(Counters::default());
    let network = InProcessNetwork::new();
    let listener = network.listen(URL).expect("listen");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(AuthLayer::new(Some(guard.clone())))
            .add_service(AuthServiceServer::new(CountingAuth(
                Authenticator::new(guard.clone()),
                counters.clone(),
            )))
            .add_service(DiscoveryServer::new(Partitions(counters.clone())))
            .serve_with_incoming_shutdown(listener, async {
                let _ = stopped.await;
            }),
    );
    Server {
        network,
        counters,
        guard,
        _stop: stop,
    }
}

async fn client(
    server: &Server,
    configure: impl FnOnce(super::super::BrokerClientBuilder) -> super::super::BrokerClientBuilder,
) -> BrokerClient {
    configure(
        BrokerClient::builder()
            .service_url(URL)
            .in_process(server.network.clone()),
    )
    .build()
    .await
    .expect("client")
}

/// Subscribing lists the partitions first: `NoSuchTopic` means the call was let through.
async fn list(client: &BrokerClient) -> Result<(), BrokerError> {
    match client
        .consumer("/default/absent")
        .name("c")
        .subscription("s")
        .subscribe()
        .await
    {
        Err(BrokerError::NoSuchTopic(_)) => Ok(()),
        Err(error) => Err(error),
        Ok(_) => panic!("an absent topic was subscribed to"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_keys_token_is_reused_until_four_fifths_of_its_life_then_refreshed() {
    let server = start();
    let client = client(&server, |b| b.api_key(KEY)).await;
    let authenticated = || server.counters.authenticated.load(Ordering::SeqCst);
    list(&client).await.expect("first call");
    assert_eq!(authenticated(), 1);
    list(&client).await.expect("second call");
    assert_eq!(authenticated(), 1, "the token is reused");
    // One-hour tokens are refreshed after 48 minutes.
    tokio::time::advance(Duration::from_secs(47 * 60)).await;
    list(&client).await.expect("at 47 min");
    assert_eq!(authenticated(), 1);
    tokio::time::advance(Duration::from_secs(2 * 60)).await;
    list(&client).await.expect("at 49 min");
    assert_eq!(authenticated(), 2, "refreshed before it expired");
}

#[tokio::test(start_paused = true)]
async fn unauthenticated_fetches_a_new_token_and_tries_once_more() {
    let server = start();
    let client = client(&server, |b| b.api_key(KEY)).await;
    list(&client).await.expect("first call");
    server.counters.refuse_next.store(true, Ordering::SeqCst);
    let before = server.counters.partitions.load(Ordering::SeqCst);
    list(&client).await.expect("recovered with a new token");
    assert_eq!(server.counters.authenticated.load(Ordering::SeqCst), 2);
    assert_eq!(
        server.counters.partitions.load(Ordering::SeqCst),
        before + 2
    );

    // A token given as is cannot be refreshed: the refusal is the caller's.
    let token = server.guard.config().signer.issue(
        &crate::auth::Principal {
            name: "fixed".to_owned(),
            kind: "user".to_owned(),
            roles: vec![Role::Consume],
        },
        crate::auth::guard::unix_now(),
    );
    let fixed = client_with_token(&server, &token).await;
    list(&fixed).await.expect("the token is good");
    server.counters.refuse_next.store(true, Ordering::SeqCst);
    let error = list(&fixed).await.expect_err("refused");
    assert_eq!(error.code(), Some(Code::Unauthenticated));
}

async fn client_with_token(server: &Server, token: &str) -> BrokerClient {
    let token = token.to_owned();
    client(server, move |b| b.token(token)).await
}

#[tokio::test(start_paused = true)]
async fn a_bad_key_is_unauthenticated_and_no_key_is_refused() {
    let server = start();
    let bad = client(&server, |b| b.api_key("not-the-key")).await;
    let error = list(&bad).await.expect_err("bad key");
    assert_eq!(error.code(), Some(Code::Unauthenticated), "{error}");
    let anonymous = client(&server, |b| b).await;
    let error = list(&anonymous).await.expect_err("no credentials");
    assert_eq!(error.code(), Some(Code::Unauthenticated), "{error}");
    let both = BrokerClient::builder()
        .service_url(URL)
        .api_key(KEY)
        .token("t")
        .build()
        .await
        .expect_err("one or the other");
    assert!(matches!(both, BrokerError::InvalidInput(_)), "{both}");
}
