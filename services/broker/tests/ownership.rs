//! Ownership across nodes sharing one storage (spec §3): one winner per claim race, claims
//! taken over after the owner's lease, and the gRPC answers of owner and non-owner (Redirect,
//! `Unavailable`, health `CLOSE` once a newer claim is seen).

use std::sync::Arc;
use std::time::Duration;

use courier_broker::directory::{NodeUrls, Owner};
use courier_broker::ownership::{Ownership, OwnershipConfig};
use courier_broker::server::{BrokerConfig, BrokerServer, ServeError};
use courier_broker::topic::TopicName;
use courier_impls::grpc::proto::danube::discovery_client::DiscoveryClient;
use courier_impls::grpc::proto::danube::health_check_client::HealthCheckClient;
use courier_impls::grpc::proto::danube::health_check_request::ClientType;
use courier_impls::grpc::proto::danube::health_check_response::ClientStatus;
use courier_impls::grpc::proto::danube::producer_service_client::ProducerServiceClient;
use courier_impls::grpc::proto::danube::topic_lookup_response::LookupType;
use courier_impls::grpc::proto::danube::{
    DispatchStrategy, HealthCheckRequest, MsgId, ProducerAccessMode, ProducerRequest,
    StreamMessage, TopicLookupRequest,
};
use courier_impls::grpc::{ChannelOptions, GrpcChannels, InProcessNetwork};
use courier_impls::memory::{MemoryStorageConfig, MemoryStreamStorage};
use courier_impls::sqlite::{SqliteStorageConfig, SqliteStreamStorage};
use courier_traits::clock::ManualClock;
use courier_traits::storage::StreamStorage;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Code;

const LEASE: Duration = Duration::from_secs(15);

fn urls(url: &str) -> NodeUrls {
    NodeUrls::same(url).expect("valid")
}

/// Renewal far in the future: the tests renew by hand, in step with the storage's clock.
fn cluster(url: &str) -> OwnershipConfig {
    OwnershipConfig {
        renew_every: Duration::from_secs(3600),
        ..OwnershipConfig::new(&urls(url))
    }
}

fn storage_at(clock: &Arc<ManualClock>) -> Arc<dyn StreamStorage> {
    Arc::new(MemoryStreamStorage::with_config(
        MemoryStorageConfig::default().with_clock(clock.clone()),
    ))
}

fn topic(name: &str) -> TopicName {
    TopicName::new(name).expect("valid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_claiming_at_once_get_one_owner() {
    // SQLite: its calls really run concurrently, so claims interleave between read and append.
    let directory = tempfile::tempdir().expect("tempdir");
    let path = directory.path().join("broker.db");
    let storage: Arc<dyn StreamStorage> = Arc::new(
        SqliteStreamStorage::connect(&path, SqliteStorageConfig::default())
            .await
            .expect("sqlite"),
    );
    let node_urls: Vec<String> = (0..4).map(|n| format!("http://n{n}.test:1")).collect();
    let mut nodes = Vec::new();
    for url in &node_urls {
        nodes.push(
            Ownership::start(storage.clone(), urls(url), cluster(url))
                .await
                .expect("node"),
        );
    }
    for index in 0..40 {
        let name = topic(&format!("/default/race-{index}"));
        let barrier = Arc::new(tokio::sync::Barrier::new(nodes.len()));
        let tasks: Vec<_> = nodes
            .iter()
            .map(|node| {
                let (node, name, barrier) = (node.clone(), name.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    node.resolve(&name).await
                })
            })
            .collect();
        let mut owners = Vec::new();
        for (task, url) in tasks.into_iter().zip(&node_urls) {
            owners.push(match task.await.expect("task").expect("resolves") {
                Owner::Here => urls(url),
                Owner::Node(other) => other,
            });
        }
        assert!(
            owners.iter().all(|owner| *owner == owners[0]),
            "{name}: the nodes disagree on the owner: {owners:?}"
        );
        let holders = nodes.iter().filter(|node| node.holds(&name)).count();
        assert_eq!(holders, 1, "{name}: exactly one node holds it");
    }
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test]
async fn a_topic_is_claimed_again_only_after_its_owners_lease() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let storage = storage_at(&clock);
    let (a_url, b_url) = ("http://a.test:1", "http://b.test:1");
    let a = Ownership::start(storage.clone(), urls(a_url), cluster(a_url))
        .await
        .expect("a");
    let b = Ownership::start(storage.clone(), urls(b_url), cluster(b_url))
        .await
        .expect("b");
    let orders = topic("/default/orders");
    assert_eq!(a.resolve(&orders).await.expect("a"), Owner::Here);
    // Renewed within the lease, a keeps the topic however long it runs.
    for _ in 0..4 {
        clock.advance(LEASE - Duration::from_secs(1));
        a.renew().await.expect("renew");
        b.renew().await.expect("renew");
        assert_eq!(
            b.resolve(&orders).await.expect("b"),
            Owner::Node(urls(a_url))
        );
        assert!(a.holds(&orders));
    }
    // a stops renewing (killed or paused); b heads its liveness, which does not renew it.
    clock.advance(LEASE - Duration::from_secs(1));
    b.renew().await.expect("renew");
    assert_eq!(
        b.resolve(&orders).await.expect("b"),
        Owner::Node(urls(a_url))
    );
    clock.advance(Duration::from_secs(2));
    b.renew().await.expect("renew");
    assert_eq!(
        b.resolve(&orders).await.expect("b"),
        Owner::Here,
        "a's lease ran out"
    );
    assert!(b.holds(&orders));
    assert!(a.holds(&orders), "a has not looked yet");
    // a wakes up: its renewal sees b's newer claim and stops serving the topic.
    a.renew().await.expect("renew");
    assert!(!a.holds(&orders));
    assert_eq!(
        a.resolve(&orders).await.expect("a"),
        Owner::Node(urls(b_url))
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_node_restarted_at_its_address_keeps_its_topics_and_a_stopped_one_hands_them_over() {
    let storage: Arc<dyn StreamStorage> = Arc::new(MemoryStreamStorage::new());
    let (a_url, b_url) = ("http://a.test:1", "http://b.test:1");
    let orders = topic("/default/orders");
    let a = Ownership::start(storage.clone(), urls(a_url), cluster(a_url))
        .await
        .expect("a");
    assert_eq!(a.resolve(&orders).await.expect("a"), Owner::Here);
    // kill -9: nothing withdrawn; the restarted a (same id) finds its own claim.
    drop(a);
    let a = Ownership::start(storage.clone(), urls(a_url), cluster(a_url))
        .await
        .expect("a again");
    let b = Ownership::start(storage.clone(), urls(b_url), cluster(b_url))
        .await
        .expect("b");
    assert_eq!(
        b.resolve(&orders).await.expect("b"),
        Owner::Node(urls(a_url))
    );
    assert_eq!(a.resolve(&orders).await.expect("a"), Owner::Here);
    // A graceful stop withdraws a's liveness: b takes over without waiting for the lease.
    a.stop().await;
    assert_eq!(b.resolve(&orders).await.expect("b"), Owner::Here);
    b.stop().await;
}

struct Node {
    url: &'static str,
    server_ownership: Arc<Ownership>,
    stop: Option<oneshot::Sender<()>>,
    served: JoinHandle<Result<(), ServeError>>,
}

async fn node(
    storage: Arc<dyn StreamStorage>,
    network: &InProcessNetwork,
    url: &'static str,
) -> Node {
    let mut config = BrokerConfig::new(urls(url));
    config.cluster = Some(cluster(url));
    let server = BrokerServer::open(storage, config).await.expect("open");
    let ownership = server.ownership().expect("clustered").clone();
    let listener = network.listen(url).expect("listen");
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(server.serve_with_incoming(listener, async {
        let _ = stopped.await;
    }));
    Node {
        url,
        server_ownership: ownership,
        stop: Some(stop),
        served,
    }
}

impl Node {
    async fn shut(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.served)
            .await
            .expect("stops")
            .expect("task")
            .expect("serve");
    }
}

fn producer_request(topic: &str) -> ProducerRequest {
    ProducerRequest {
        request_id: 1,
        producer_name: "p".into(),
        topic_name: topic.into(),
        schema_ref: None,
        producer_access_mode: ProducerAccessMode::Shared.into(),
        dispatch_strategy: DispatchStrategy::Reliable.into(),
    }
}

#[tokio::test]
async fn the_owner_connects_the_other_redirects_and_refuses_and_a_superseded_owner_closes() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let storage = storage_at(&clock);
    let network = InProcessNetwork::new();
    let a = node(storage.clone(), &network, "http://a.test:6650").await;
    let b = node(storage.clone(), &network, "http://b.test:6650").await;
    let channels = GrpcChannels::in_process(network, ChannelOptions::default());
    let channel = |node: &Node| channels.channel(node.url).expect("channel");
    let name = "/default/orders";
    let lookup = |node: &Node, request_id| {
        let mut discovery = DiscoveryClient::new(channel(node));
        async move {
            discovery
                .topic_lookup(TopicLookupRequest {
                    request_id,
                    topic: name.into(),
                })
                .await
                .expect("lookup")
                .into_inner()
        }
    };

    let producer_id = ProducerServiceClient::new(channel(&a))
        .create_producer(producer_request(name))
        .await
        .expect("a creates and claims")
        .into_inner()
        .producer_id;
    // b has never seen the topic: it folds the catalog, then redirects to a.
    for (node, kind, url) in [
        (&a, LookupType::Connect, a.url),
        (&b, LookupType::Redirect, a.url),
    ] {
        let lookup = lookup(node, 5).await;
        assert_eq!(
            lookup.response_type,
            i32::from(kind),
            "lookup at {}",
            node.url
        );
        assert_eq!(
            (lookup.broker_url.as_str(), lookup.connect_url.as_str()),
            (url, url)
        );
        assert!(!lookup.proxy);
        assert_eq!(lookup.request_id, 5, "request id echoed");
    }
    let refused = ProducerServiceClient::new(channel(&b))
        .create_producer(producer_request(name))
        .await
        .expect_err("b does not serve it");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    let send = |id| StreamMessage {
        request_id: 7,
        msg_id: Some(MsgId {
            producer_id: id,
            topic_name: name.into(),
            broker_addr: String::new(),
            topic_offset: 0,
        }),
        payload: b"m".to_vec().into(),
        producer_name: "p".into(),
        ..StreamMessage::default()
    };
    let refused = ProducerServiceClient::new(channel(&b))
        .send_message(send(producer_id))
        .await
        .expect_err("b does not serve it");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    ProducerServiceClient::new(channel(&a))
        .send_message(send(producer_id))
        .await
        .expect("a serves it");
    let health = || async {
        HealthCheckClient::new(channel(&a))
            .health_check(HealthCheckRequest {
                request_id: 9,
                client: ClientType::Producer.into(),
                id: producer_id,
            })
            .await
            .expect("health")
            .into_inner()
            .status
    };
    assert_eq!(health().await, i32::from(ClientStatus::Ok));

    // a stops renewing past its lease; b claims; a, on its next renewal, sees the newer claim.
    clock.advance(LEASE + Duration::from_secs(1));
    b.server_ownership.renew().await.expect("renew");
    let answer = lookup(&b, 6).await;
    assert_eq!(
        answer.response_type,
        i32::from(LookupType::Connect),
        "b took over"
    );
    assert_eq!(
        health().await,
        i32::from(ClientStatus::Ok),
        "a has not looked yet"
    );
    a.server_ownership.renew().await.expect("renew");
    assert_eq!(health().await, i32::from(ClientStatus::Close));
    let refused = ProducerServiceClient::new(channel(&a))
        .send_message(send(producer_id))
        .await
        .expect_err("a no longer serves it");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    let answer = lookup(&a, 8).await;
    assert_eq!(answer.response_type, i32::from(LookupType::Redirect));
    assert_eq!(answer.connect_url, b.url);
    a.shut().await;
    b.shut().await;
}
