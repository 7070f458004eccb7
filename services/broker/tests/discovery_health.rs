//! Discovery and HealthCheck through the generated Danube stubs, served in-process: spec §1
//! rules 2 (request ids echoed), 4, 5 and 6 on every response.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use courier_broker::directory::{NodeUrls, Owner, TopicTable};
use courier_broker::discovery::DiscoveryService;
use courier_broker::health::{ClientView, HealthService};
use courier_broker::topic::TopicName;
use courier_impls::grpc::proto::danube::discovery_client::DiscoveryClient;
use courier_impls::grpc::proto::danube::discovery_server::DiscoveryServer;
use courier_impls::grpc::proto::danube::health_check_client::HealthCheckClient;
use courier_impls::grpc::proto::danube::health_check_request::ClientType;
use courier_impls::grpc::proto::danube::health_check_response::ClientStatus;
use courier_impls::grpc::proto::danube::health_check_server::HealthCheckServer;
use courier_impls::grpc::proto::danube::topic_lookup_response::LookupType;
use courier_impls::grpc::proto::danube::{HealthCheckRequest, TopicLookupRequest};
use courier_impls::grpc::{Call, ChannelOptions, GrpcChannels, GrpcError, InProcessNetwork};
use tokio::sync::oneshot;
use tonic::Code;

const HERE: &str = "http://broker-a.test:6650";
const OTHER: &str = "https://broker-b.test:6651";

/// Producers 1, 2 and consumer 7 are held here.
struct Held {
    producers: HashSet<u64>,
    consumers: HashSet<u64>,
}

impl ClientView for Held {
    fn holds_producer(&self, id: u64) -> bool {
        self.producers.contains(&id)
    }
    fn holds_consumer(&self, id: u64) -> bool {
        self.consumers.contains(&id)
    }
}

fn topic(name: &str) -> TopicName {
    TopicName::new(name).expect(name)
}

/// A node serving `/default/plain` and `/default/orders-part-{0,1,2}` here, `/default/away`
/// on another node; stops when dropped.
struct Node {
    channels: GrpcChannels,
    topics: Arc<RwLock<TopicTable>>,
    _stop: oneshot::Sender<()>,
}

fn start() -> Node {
    let mut table = TopicTable::new();
    table.insert(topic("/default/plain"), Owner::Here);
    for index in [2, 0, 1] {
        table.insert(
            topic("/default/orders").partition(index).expect("fits"),
            Owner::Here,
        );
    }
    table.insert(
        topic("/default/away"),
        Owner::Node(NodeUrls::same(OTHER).expect("valid")),
    );
    let topics = Arc::new(RwLock::new(table));
    let held = Arc::new(Held {
        producers: HashSet::from([1, 2]),
        consumers: HashSet::from([7]),
    });
    let network = InProcessNetwork::new();
    let listener = network.listen(HERE).expect("listen");
    let (stop, stopped) = oneshot::channel::<()>();
    let router = tonic::transport::Server::builder()
        .add_service(DiscoveryServer::new(DiscoveryService::new(
            NodeUrls::same(HERE).expect("valid"),
            topics.clone(),
        )))
        .add_service(HealthCheckServer::new(HealthService::new(held)));
    // The server ends when `stop` is dropped with the node (the runtime ends it otherwise).
    tokio::spawn(router.serve_with_incoming_shutdown(listener, async {
        let _ = stopped.await;
    }));
    Node {
        channels: GrpcChannels::in_process(network, ChannelOptions::default()),
        topics,
        _stop: stop,
    }
}

fn call() -> Call {
    Call::new(HERE).deadline(Duration::from_secs(10))
}

impl Node {
    fn discovery(&self) -> DiscoveryClient<courier_impls::grpc::GrpcChannel> {
        DiscoveryClient::new(self.channels.channel(HERE).expect("channel"))
    }

    async fn lookup(
        &self,
        request_id: u64,
        name: &str,
    ) -> Result<courier_impls::grpc::proto::danube::TopicLookupResponse, GrpcError> {
        let call = call();
        let request = TopicLookupRequest {
            request_id,
            topic: name.into(),
        };
        call.unary(self.discovery().topic_lookup(call.request(request)))
            .await
    }

    async fn partitions(
        &self,
        request_id: u64,
        name: &str,
    ) -> Result<(u64, Vec<String>), GrpcError> {
        let call = call();
        let request = TopicLookupRequest {
            request_id,
            topic: name.into(),
        };
        let response = call
            .unary(self.discovery().topic_partitions(call.request(request)))
            .await?;
        Ok((response.request_id, response.partitions))
    }

    async fn health(&self, client: i32, id: u64) -> Result<ClientStatus, GrpcError> {
        let call = call();
        let request = HealthCheckRequest {
            request_id: 5,
            client,
            id,
        };
        let mut health = HealthCheckClient::new(self.channels.channel(HERE).expect("channel"));
        let response = call
            .unary(health.health_check(call.request(request)))
            .await?;
        Ok(ClientStatus::try_from(response.status).expect("a known status"))
    }
}

#[tokio::test]
async fn lookup_connects_here_redirects_elsewhere_and_echoes_the_request_id() {
    let node = start();
    let here = node
        .lookup(41, "/default/plain")
        .await
        .expect("served here");
    assert_eq!(here.request_id, 41);
    assert_eq!(here.response_type(), LookupType::Connect);
    assert_eq!(here.broker_url, HERE);
    assert_eq!(here.connect_url, HERE);
    assert!(!here.proxy);

    let partition = node
        .lookup(42, "/default/orders-part-1")
        .await
        .expect("partition");
    assert_eq!(partition.response_type(), LookupType::Connect);

    let away = node
        .lookup(43, "/default/away")
        .await
        .expect("served elsewhere");
    assert_eq!(away.request_id, 43);
    assert_eq!(away.response_type(), LookupType::Redirect);
    assert_eq!(away.broker_url, OTHER, "absolute, https kept for TLS");
    assert_eq!(away.connect_url, OTHER);
    assert!(!away.proxy);
}

#[tokio::test]
async fn lookup_refuses_unknown_topics_and_bad_names() {
    let node = start();
    let missing = node
        .lookup(1, "/default/missing")
        .await
        .expect_err("unknown");
    assert_eq!(missing.code(), Code::NotFound, "{missing}");
    let partitioned = node
        .lookup(1, "/default/orders")
        .await
        .expect_err("no plain topic");
    assert_eq!(partitioned.code(), Code::NotFound, "{partitioned}");
    for bad in [
        "a",
        "/a",
        "/a/b/c",
        "/ns/",
        "/ns/caf\u{e9}",
        &format!("/ns/{}", "t".repeat(252)),
    ] {
        let error = node.lookup(1, bad).await.expect_err(bad);
        assert_eq!(error.code(), Code::InvalidArgument, "{bad:?}: {error}");
        assert!(
            error.to_string().contains("topic"),
            "names the field: {error}"
        );
        let error = node.partitions(1, bad).await.expect_err(bad);
        assert_eq!(error.code(), Code::InvalidArgument, "{bad:?}: {error}");
    }
}

#[tokio::test]
async fn partitions_answer_the_topic_its_partitions_or_nothing() {
    let node = start();
    assert_eq!(
        node.partitions(7, "/default/plain").await.expect("plain"),
        (7, vec!["/default/plain".to_owned()])
    );
    assert_eq!(
        node.partitions(8, "/default/orders")
            .await
            .expect("partitioned"),
        (
            8,
            vec![
                "/default/orders-part-0".to_owned(),
                "/default/orders-part-1".to_owned(),
                "/default/orders-part-2".to_owned(),
            ]
        )
    );
    assert_eq!(
        node.partitions(9, "/default/missing")
            .await
            .expect("unknown"),
        (9, Vec::new())
    );
    // Partitions added later show up, in index order.
    node.topics.write().expect("lock").insert(
        topic("/default/orders").partition(10).expect("fits"),
        Owner::Here,
    );
    let (_, names) = node.partitions(10, "/default/orders").await.expect("more");
    assert_eq!(
        names.last().map(String::as_str),
        Some("/default/orders-part-10")
    );
    assert_eq!(names.len(), 4);
}

#[tokio::test]
async fn health_is_ok_while_held_close_otherwise_and_refuses_bad_client_types() {
    let node = start();
    let producer = ClientType::Producer as i32;
    let consumer = ClientType::Consumer as i32;
    assert_eq!(
        node.health(producer, 1).await.expect("held"),
        ClientStatus::Ok
    );
    assert_eq!(
        node.health(producer, 7).await.expect("not a producer"),
        ClientStatus::Close
    );
    assert_eq!(
        node.health(consumer, 7).await.expect("held"),
        ClientStatus::Ok
    );
    assert_eq!(
        node.health(consumer, 1).await.expect("not a consumer"),
        ClientStatus::Close
    );
    for bad in [2, -1, i32::MAX] {
        let error = node.health(bad, 1).await.expect_err("bad type");
        assert_eq!(error.code(), Code::InvalidArgument, "{bad}: {error}");
    }
}
