//! Ownership across nodes sharing one storage (spec §3): one winner per claim race, claims
//! taken over after the owner's lease, and the gRPC answers of owner and non-owner (Redirect,
//! `Unavailable`, health `CLOSE` once a newer claim is seen).

use std::sync::Arc;
use std::time::Duration;

use courier_broker::directory::{NodeUrls, Owner};
use courier_broker::ownership::{Claim, Ownership, OwnershipConfig, claim_stream, node_id_for};
use courier_broker::server::{BrokerConfig, BrokerServer, ServeError};
use courier_broker::topic::TopicName;
use courier_impls::grpc::GrpcChannel;
use courier_impls::grpc::proto::danube::consumer_service_client::ConsumerServiceClient;
use courier_impls::grpc::proto::danube::discovery_client::DiscoveryClient;
use courier_impls::grpc::proto::danube::health_check_client::HealthCheckClient;
use courier_impls::grpc::proto::danube::health_check_request::ClientType;
use courier_impls::grpc::proto::danube::health_check_response::ClientStatus;
use courier_impls::grpc::proto::danube::producer_service_client::ProducerServiceClient;
use courier_impls::grpc::proto::danube::topic_lookup_response::LookupType;
use courier_impls::grpc::proto::danube::{
    AckRequest, ConsumerRequest, DispatchStrategy, HealthCheckRequest, MsgId, ProducerAccessMode,
    ProducerRequest, ReceiveRequest, StreamMessage, TopicLookupRequest,
};
use courier_impls::grpc::{ChannelOptions, GrpcChannels, InProcessNetwork};
use courier_impls::memory::{MemoryStorageConfig, MemoryStreamStorage};
use courier_impls::sqlite::{SqliteStorageConfig, SqliteStreamStorage};
use courier_traits::clock::ManualClock;
use courier_traits::storage::{AppendRequest, StreamStorage};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::{Code, Streaming};

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

/// Nodes a and b on one memory storage whose clock the test moves, and channels to them.
async fn two_nodes() -> (Arc<ManualClock>, Node, Node, GrpcChannels) {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let storage = storage_at(&clock);
    let network = InProcessNetwork::new();
    let a = node(storage.clone(), &network, "http://a.test:6650").await;
    let b = node(storage.clone(), &network, "http://b.test:6650").await;
    let channels = GrpcChannels::in_process(network, ChannelOptions::default());
    (clock, a, b, channels)
}

/// A SendMessage of `payload` by producer `producer_id` to `topic`.
fn message(producer_id: u64, topic: &str, payload: &[u8]) -> StreamMessage {
    StreamMessage {
        request_id: 7,
        msg_id: Some(MsgId {
            producer_id,
            topic_name: topic.into(),
            broker_addr: String::new(),
            topic_offset: 0,
        }),
        payload: payload.to_vec().into(),
        producer_name: "p".into(),
        ..StreamMessage::default()
    }
}

#[tokio::test]
async fn the_owner_connects_the_other_redirects_and_refuses_and_a_superseded_owner_closes() {
    let (clock, a, b, channels) = two_nodes().await;
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
    let send = |id| message(id, name, b"m");
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

/// Subscribes `sub` (Shared) on the node behind `channel` and opens its stream.
async fn subscribe_at(channel: GrpcChannel, name: &str) -> (u64, Streaming<StreamMessage>) {
    let mut consumers = ConsumerServiceClient::new(channel);
    let consumer_id = consumers
        .subscribe(ConsumerRequest {
            request_id: 1,
            topic_name: name.into(),
            consumer_name: "c".into(),
            subscription: "sub".into(),
            subscription_type: 1,
            key_filters: Vec::new(),
        })
        .await
        .expect("subscribe")
        .into_inner()
        .consumer_id;
    let stream = consumers
        .receive_messages(ReceiveRequest {
            request_id: 2,
            consumer_id,
        })
        .await
        .expect("receive")
        .into_inner();
    (consumer_id, stream)
}

/// The next message of `stream` (`None` when it ended), within 10 s.
async fn next_message(stream: &mut Streaming<StreamMessage>) -> Option<StreamMessage> {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a message or the end within 10 s")
        .ok()
        .flatten()
}

/// Receives and acks until the message at `last` is acked; returns the offsets acked.
async fn ack_through(
    channel: GrpcChannel,
    stream: &mut Streaming<StreamMessage>,
    last: u64,
) -> Vec<u64> {
    let mut consumers = ConsumerServiceClient::new(channel);
    let mut acked = Vec::new();
    while acked.last() != Some(&last) {
        let message = next_message(stream).await.expect("a message");
        let msg_id = message.msg_id.expect("msg_id");
        acked.push(msg_id.topic_offset);
        consumers
            .ack(AckRequest {
                request_id: 3,
                msg_id: Some(msg_id),
                subscription_name: "sub".into(),
            })
            .await
            .expect("ack");
    }
    acked
}

#[tokio::test]
async fn a_node_that_takes_a_topic_back_resumes_from_the_other_nodes_cursor() {
    let (clock, a, b, channels) = two_nodes().await;
    let channel = |node: &Node| channels.channel(node.url).expect("channel");
    let name = "/default/orders";
    let producer = |node: &Node| {
        let mut producers = ProducerServiceClient::new(channel(node));
        async move {
            producers
                .create_producer(producer_request(name))
                .await
                .expect("create producer")
                .into_inner()
                .producer_id
        }
    };
    let send = |node: &Node, producer_id: u64, payload: String| {
        let mut producers = ProducerServiceClient::new(channel(node));
        async move {
            producers
                .send_message(message(producer_id, name, payload.as_bytes()))
                .await
                .expect("send");
        }
    };

    // a owns the topic, its consumer takes 0 and 1.
    let a_producer = producer(&a).await;
    let (_, mut a_stream) = subscribe_at(channel(&a), name).await;
    for index in 0..6 {
        send(&a, a_producer, format!("m{index}")).await;
    }
    assert_eq!(ack_through(channel(&a), &mut a_stream, 1).await, [0, 1]);

    // a stops renewing past its lease; b claims the topic and its consumer acks on to 3.
    clock.advance(LEASE + Duration::from_secs(1));
    b.server_ownership.renew().await.expect("renew");
    let (_, mut b_stream) = subscribe_at(channel(&b), name).await;
    let acked_at_b = ack_through(channel(&b), &mut b_stream, 3).await;
    assert_eq!(acked_at_b.last(), Some(&3), "{acked_at_b:?}");
    // a wakes up and sees b's claim: its consumer's stream ends.
    a.server_ownership.renew().await.expect("renew");
    assert!(!a.server_ownership.holds(&topic(name)));
    // (Messages already sent down it may still be read; nothing comes after.)
    let mut ended = false;
    for _ in 0..10 {
        if next_message(&mut a_stream).await.is_none() {
            ended = true;
            break;
        }
    }
    assert!(ended, "a's consumer stream ends once a lost the topic");

    // b stops (checkpointing and withdrawing its liveness); a takes the topic back.
    b.shut().await;
    let (_, mut a_stream) = subscribe_at(channel(&a), name).await;
    let first = next_message(&mut a_stream).await.expect("a message");
    assert_eq!(
        first.msg_id.expect("msg_id").topic_offset,
        4,
        "a resumes from b's cursor, not its own stale one"
    );
    a.shut().await;
}

#[tokio::test]
async fn one_unreadable_claim_stream_does_not_keep_the_other_lost_topics_served() {
    let storage: Arc<dyn StreamStorage> = Arc::new(MemoryStreamStorage::new());
    let a_url = "http://a.test:1";
    let a = Ownership::start(storage.clone(), urls(a_url), cluster(a_url))
        .await
        .expect("a");
    let corrupt = topic("/default/corrupt");
    // Many lost topics, so that some come after the corrupt one whatever the order checked.
    let taken: Vec<TopicName> = (0..20)
        .map(|index| topic(&format!("/default/taken-{index}")))
        .collect();
    for name in taken.iter().chain([&corrupt]) {
        assert_eq!(a.resolve(name).await.expect("a"), Owner::Here);
    }
    storage
        .append(
            &claim_stream(&corrupt),
            AppendRequest::record(&b"not a claim"[..]),
        )
        .await
        .expect("append");
    let b_url = "http://b.test:1";
    for name in &taken {
        let claim = Claim {
            epoch: 2,
            node: node_id_for(b_url),
            broker_url: b_url.into(),
            connect_url: b_url.into(),
        };
        let record = serde_json::to_vec(&claim).expect("json");
        storage
            .append(
                &claim_stream(name),
                AppendRequest::record(record).with_writer_seq(claim.writer_seq()),
            )
            .await
            .expect("b claims");
    }
    a.renew()
        .await
        .expect_err("the corrupt claim stream is reported");
    assert!(a.holds(&corrupt), "unchecked, it stays held");
    for name in &taken {
        assert!(!a.holds(name), "{name}: b's newer claim is seen");
    }
    a.stop().await;
}
