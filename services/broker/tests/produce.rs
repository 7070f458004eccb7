//! The producer side through the generated Danube stubs, served in-process by
//! [`BrokerServer`]: spec §1 rules on every response (B1), bad input (B2), non-reliable
//! produce (B5), partitions (B6), and producers re-attached after a restart.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;
use support::log::stored;

use courier_broker::catalog::{LiveSink, topic_log_stream};
use courier_broker::directory::NodeUrls;
use courier_broker::lifecycle::Lifecycle;
use courier_broker::producer::{DEFAULT_PRODUCER_IDLE_TIMEOUT, producer_id};
use courier_broker::server::{BrokerConfig, BrokerServer, ServeError};
use courier_broker::topic::TopicName;
use courier_impls::grpc::GrpcChannel;
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
use courier_impls::memory::MemoryStreamStorage;
use courier_traits::storage::{StorageError, StreamStorage};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Code;

const HERE: &str = "http://broker-a.test:6650";

/// A broker node served in-process; [`Node::stop`] shuts it down gracefully.
struct Node {
    channels: GrpcChannels,
    catalog: Arc<courier_broker::catalog::Catalog>,
    lifecycle: Arc<Lifecycle>,
    stop: Option<oneshot::Sender<()>>,
    served: JoinHandle<Result<(), ServeError>>,
}

async fn start_with(storage: Arc<dyn StreamStorage>, config: BrokerConfig) -> Node {
    let server = BrokerServer::open(storage, config).await.expect("open");
    let catalog = server.catalog().clone();
    let lifecycle = server.lifecycle().clone();
    let network = InProcessNetwork::new();
    let listener = network.listen(HERE).expect("listen");
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(server.serve_with_incoming(listener, async {
        let _ = stopped.await;
    }));
    Node {
        channels: GrpcChannels::in_process(network, ChannelOptions::default()),
        catalog,
        lifecycle,
        stop: Some(stop),
        served,
    }
}

fn config() -> BrokerConfig {
    BrokerConfig::new(NodeUrls::same(HERE).expect("valid"))
}

async fn start(storage: Arc<dyn StreamStorage>) -> Node {
    start_with(storage, config()).await
}

fn memory() -> Arc<dyn StreamStorage> {
    Arc::new(MemoryStreamStorage::new())
}

fn create_request(topic: &str, name: &str, dispatch: DispatchStrategy) -> ProducerRequest {
    ProducerRequest {
        request_id: 11,
        producer_name: name.into(),
        topic_name: topic.into(),
        schema_ref: None,
        producer_access_mode: ProducerAccessMode::Shared.into(),
        dispatch_strategy: dispatch.into(),
    }
}

fn message(producer_id: u64, topic: &str, name: &str, request_id: u64) -> StreamMessage {
    StreamMessage {
        request_id,
        msg_id: Some(MsgId {
            producer_id,
            topic_name: topic.into(),
            broker_addr: HERE.into(),
            topic_offset: 0,
        }),
        payload: format!("payload {request_id}").into_bytes().into(),
        publish_time: 1_700_000_000_000 + request_id,
        producer_name: name.into(),
        ..StreamMessage::default()
    }
}

impl Node {
    fn channel(&self) -> GrpcChannel {
        self.channels.channel(HERE).expect("channel")
    }

    fn producers(&self) -> ProducerServiceClient<GrpcChannel> {
        ProducerServiceClient::new(self.channel())
    }

    async fn create(&self, request: ProducerRequest) -> Result<u64, tonic::Status> {
        let request_id = request.request_id;
        let name = request.producer_name.clone();
        let response = self
            .producers()
            .create_producer(request)
            .await?
            .into_inner();
        assert_eq!(response.request_id, request_id, "request id echoed");
        assert_eq!(response.producer_name, name, "name echoed");
        Ok(response.producer_id)
    }

    async fn send(&self, message: StreamMessage) -> Result<(), tonic::Status> {
        let request_id = message.request_id;
        let response = self.producers().send_message(message).await?.into_inner();
        assert_eq!(response.request_id, request_id, "request id echoed");
        Ok(())
    }

    async fn health(&self, id: u64) -> ClientStatus {
        let request = HealthCheckRequest {
            request_id: 1,
            client: ClientType::Producer.into(),
            id,
        };
        let response = HealthCheckClient::new(self.channel())
            .health_check(request)
            .await
            .expect("health");
        ClientStatus::try_from(response.into_inner().status).expect("known status")
    }

    async fn partitions(&self, topic: &str) -> Vec<String> {
        let request = TopicLookupRequest {
            request_id: 3,
            topic: topic.into(),
        };
        DiscoveryClient::new(self.channel())
            .topic_partitions(request)
            .await
            .expect("partitions")
            .into_inner()
            .partitions
    }

    async fn lookup(&self, topic: &str) -> Result<LookupType, tonic::Status> {
        let request = TopicLookupRequest {
            request_id: 4,
            topic: topic.into(),
        };
        let response = DiscoveryClient::new(self.channel())
            .topic_lookup(request)
            .await?
            .into_inner();
        assert_eq!(response.connect_url, HERE);
        Ok(response.response_type())
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.served)
            .await
            .expect("shut down in time")
            .expect("task")
            .expect("served");
    }
}

#[tokio::test]
async fn reliable_producers_are_idempotent_and_their_messages_stored_with_dense_msg_ids() {
    let storage = memory();
    let node = start(storage.clone()).await;
    let topic = "/default/orders";
    let request = create_request(topic, "p1", DispatchStrategy::Reliable);
    let id = node.create(request.clone()).await.expect("created");
    assert_eq!(
        id,
        producer_id(&TopicName::new(topic).expect("valid"), "p1")
    );
    assert_eq!(node.create(request).await.expect("again"), id, "idempotent");
    assert_eq!(node.health(id).await, ClientStatus::Ok);
    assert_eq!(node.health(id + 1).await, ClientStatus::Close);
    assert_eq!(
        node.lookup(topic).await.expect("exists"),
        LookupType::Connect
    );
    assert_eq!(node.partitions(topic).await, [topic]);

    let mut first = message(id, topic, "p1", 100);
    first.attributes = HashMap::from([("k".to_owned(), "v".to_owned())]);
    first.routing_key = Some("key-1".into());
    first.schema_id = Some(3);
    first.schema_version = Some(2);
    first.subscription_name = "ignored".into();
    first.msg_id.as_mut().expect("set").topic_offset = 77;
    node.send(first.clone()).await.expect("durable");
    for request_id in 101..103 {
        node.send(message(id, topic, "p1", request_id))
            .await
            .expect("durable");
    }
    let log = stored(storage.as_ref(), topic).await;
    assert_eq!(log.len(), 3);
    for (offset, stored) in log.iter().enumerate() {
        let msg_id = stored.msg_id.as_ref().expect("msg_id");
        assert_eq!(msg_id.producer_id, id);
        assert_eq!(msg_id.topic_name, topic);
        assert_eq!(msg_id.broker_addr, HERE);
        assert_eq!(msg_id.topic_offset, offset as u64, "dense, the broker's");
        assert_eq!(stored.producer_name, "p1");
    }
    let kept = &log[0];
    assert_eq!(kept.payload, first.payload);
    assert_eq!(kept.publish_time, first.publish_time);
    assert_eq!(kept.attributes, first.attributes);
    assert_eq!(kept.routing_key.as_deref(), Some("key-1"));
    assert_eq!((kept.schema_id, kept.schema_version), (Some(3), Some(2)));
    assert_eq!(kept.subscription_name, "", "not the producer's to set");
    node.stop().await;
}

#[tokio::test]
async fn dispatch_mismatch_exclusive_access_and_the_producer_limit_are_refused() {
    let mut config = config();
    config.producer.max_producers_per_topic = 2;
    let node = start_with(memory(), config).await;
    let topic = "/default/rules";
    node.create(create_request(topic, "a", DispatchStrategy::NonReliable))
        .await
        .expect("first");
    let mismatch = node
        .create(create_request(topic, "b", DispatchStrategy::Reliable))
        .await
        .expect_err("other strategy");
    assert_eq!(mismatch.code(), Code::FailedPrecondition, "{mismatch}");
    assert!(mismatch.message().contains("non-reliable"), "{mismatch}");

    let mut exclusive = create_request(topic, "x", DispatchStrategy::NonReliable);
    exclusive.producer_access_mode = ProducerAccessMode::Exclusive.into();
    let refused = node.create(exclusive).await.expect_err("others write here");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused}");

    node.create(create_request(topic, "b", DispatchStrategy::NonReliable))
        .await
        .expect("second");
    let limit = node
        .create(create_request(topic, "c", DispatchStrategy::NonReliable))
        .await
        .expect_err("limit");
    assert_eq!(limit.code(), Code::ResourceExhausted, "{limit}");

    let solo = "/default/solo";
    let mut owner = create_request(solo, "owner", DispatchStrategy::Reliable);
    owner.producer_access_mode = ProducerAccessMode::Exclusive.into();
    node.create(owner.clone()).await.expect("exclusive");
    node.create(owner).await.expect("same name again");
    let other = node
        .create(create_request(solo, "other", DispatchStrategy::Reliable))
        .await
        .expect_err("exclusive holder");
    assert_eq!(other.code(), Code::FailedPrecondition, "{other}");
    node.stop().await;
}

#[tokio::test]
async fn bad_input_is_invalid_argument_naming_the_field() {
    let node = start(memory()).await;
    let long = format!("/ns/{}", "t".repeat(252));
    for topic in [
        "a",
        "/a",
        "/a/b/c",
        "/ns/",
        "/ns/caf\u{e9}",
        "",
        long.as_str(),
    ] {
        let error = node
            .create(create_request(topic, "p", DispatchStrategy::Reliable))
            .await
            .expect_err(topic);
        assert_eq!(error.code(), Code::InvalidArgument, "{topic:?}: {error}");
        assert!(error.message().contains("topic"), "{error}");
    }
    for name in ["", "a\nb", &"n".repeat(256)] {
        let error = node
            .create(create_request("/ns/t", name, DispatchStrategy::Reliable))
            .await
            .expect_err(name);
        assert_eq!(error.code(), Code::InvalidArgument, "{name:?}: {error}");
        assert!(error.message().contains("producer_name"), "{error}");
    }
    let mut mode = create_request("/ns/t", "p", DispatchStrategy::Reliable);
    mode.producer_access_mode = 7;
    let error = node.create(mode).await.expect_err("mode");
    assert_eq!(error.code(), Code::InvalidArgument, "{error}");
    assert!(error.message().contains("producer_access_mode"), "{error}");
    let mut dispatch = create_request("/ns/t", "p", DispatchStrategy::Reliable);
    dispatch.dispatch_strategy = -1;
    let error = node.create(dispatch).await.expect_err("dispatch");
    assert!(error.message().contains("dispatch_strategy"), "{error}");
    assert_eq!(
        node.lookup("/ns/t").await.map_err(|e| e.code()),
        Err(Code::NotFound),
        "nothing created by bad requests"
    );

    let topic = "/ns/t";
    let id = node
        .create(create_request(topic, "p", DispatchStrategy::Reliable))
        .await
        .expect("valid");
    let mut no_id = message(id, topic, "p", 1);
    no_id.msg_id = None;
    let error = node.send(no_id).await.expect_err("no msg_id");
    assert_eq!(error.code(), Code::InvalidArgument, "{error}");
    assert!(error.message().contains("msg_id"), "{error}");

    // 6 MiB passes tonic's decode limit and meets the broker's own: InvalidArgument, which
    // the client does not retry (tonic's ResourceExhausted would be retried).
    let mut huge = message(id, topic, "p", 2);
    huge.payload = vec![7u8; 6 << 20].into();
    let error = node.send(huge).await.expect_err("over-size");
    assert_eq!(error.code(), Code::InvalidArgument, "{error}");
    assert!(error.message().contains("max_message_bytes"), "{error}");
    let mut fits = message(id, topic, "p", 3);
    fits.payload = vec![7u8; (4 << 20) - (65 << 10)].into();
    node.send(fits).await.expect("just under the limit");

    let error = node
        .send(message(id, "/ns/other", "p", 4))
        .await
        .expect_err("wrong topic");
    assert_eq!(error.code(), Code::InvalidArgument, "{error}");
    let error = node
        .send(message(id ^ 1, topic, "p", 5))
        .await
        .expect_err("unknown producer");
    assert_eq!(
        error.code(),
        Code::Unavailable,
        "{error}: the client re-creates"
    );
    node.stop().await;
}

#[tokio::test]
async fn partitions_are_ordinary_topics_and_do_not_mix_with_a_plain_topic() {
    let node = start(memory()).await;
    let base = TopicName::new("/default/parts").expect("valid");
    for index in [2, 0, 1] {
        let partition = base.partition(index).expect("fits").to_string();
        node.create(create_request(
            &partition,
            &format!("p-{index}"),
            DispatchStrategy::Reliable,
        ))
        .await
        .expect("partition");
        assert_eq!(
            node.lookup(&partition).await.expect("exists"),
            LookupType::Connect
        );
    }
    assert_eq!(
        node.partitions(base.as_str()).await,
        [
            "/default/parts-part-0",
            "/default/parts-part-1",
            "/default/parts-part-2"
        ]
    );
    let plain = node
        .create(create_request(
            base.as_str(),
            "p",
            DispatchStrategy::Reliable,
        ))
        .await
        .expect_err("beside its partitions");
    assert_eq!(plain.code(), Code::AlreadyExists, "{plain}");

    node.create(create_request(
        "/default/whole",
        "p",
        DispatchStrategy::Reliable,
    ))
    .await
    .expect("plain");
    let partition = node
        .create(create_request(
            "/default/whole-part-0",
            "p-0",
            DispatchStrategy::Reliable,
        ))
        .await
        .expect_err("beside the plain topic");
    assert_eq!(partition.code(), Code::AlreadyExists, "{partition}");
    assert!(node.partitions("/default/missing").await.is_empty());
    node.stop().await;
}

/// A live sink keeping what it is handed.
#[derive(Debug, Default)]
struct Kept(Mutex<Vec<Arc<StreamMessage>>>);

impl LiveSink for Kept {
    fn offer(&self, message: Arc<StreamMessage>) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(message);
        true
    }
}

#[tokio::test]
async fn non_reliable_messages_go_live_to_receivers_only_and_are_never_stored() {
    let storage = memory();
    let node = start(storage.clone()).await;
    let topic = "/default/live";
    let id = node
        .create(create_request(topic, "p", DispatchStrategy::NonReliable))
        .await
        .expect("created");
    node.send(message(id, topic, "p", 1))
        .await
        .expect("nobody listens: dropped");
    let entry = node
        .catalog
        .topic(&TopicName::new(topic).expect("valid"))
        .expect("known");
    let live = entry.live().expect("non-reliable");
    assert_eq!(live.unheard(), 1);
    let kept = Arc::new(Kept::default());
    live.attach(Arc::downgrade(&kept) as Weak<dyn LiveSink>);
    for request_id in 2..5 {
        node.send(message(id, topic, "p", request_id))
            .await
            .expect("handed over");
    }
    let kept = kept
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    assert_eq!(kept.len(), 3, "handed over by the send itself");
    for (message, offset) in kept.iter().zip(1..) {
        let msg_id = message.msg_id.as_ref().expect("msg_id");
        assert_eq!((msg_id.topic_offset, msg_id.producer_id), (offset, id));
        assert_eq!(msg_id.topic_name, topic);
        assert_eq!(message.request_id, offset + 1);
    }
    assert_eq!(live.unheard(), 1);
    let log = topic_log_stream(&TopicName::new(topic).expect("valid"));
    assert!(matches!(
        storage.head(&log).await,
        Err(StorageError::NotFound { .. })
    ));
    node.stop().await;
}

#[tokio::test]
async fn after_a_restart_sends_reattach_by_id_and_offsets_go_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("broker.db");
    let open = || async {
        let storage = courier_impls::sqlite::SqliteStreamStorage::connect(
            &path,
            courier_impls::sqlite::SqliteStorageConfig::default(),
        )
        .await
        .expect("sqlite");
        Arc::new(storage) as Arc<dyn StreamStorage>
    };
    let topic = "/default/durable";
    let node = start(open().await).await;
    let id = node
        .create(create_request(topic, "p", DispatchStrategy::Reliable))
        .await
        .expect("created");
    node.send(message(id, topic, "p", 1))
        .await
        .expect("durable");
    node.stop().await;

    let storage = open().await;
    let node = start(storage.clone()).await;
    assert_eq!(
        node.health(id).await,
        ClientStatus::Close,
        "not attached yet"
    );
    let error = node
        .send(message(id, topic, "q", 3))
        .await
        .expect_err("a name not matching the id");
    assert_eq!(error.code(), Code::Unavailable, "{error}");
    node.send(message(id, topic, "p", 2))
        .await
        .expect("re-attached silently");
    assert_eq!(node.health(id).await, ClientStatus::Ok);
    let stranger = producer_id(&TopicName::new(topic).expect("valid"), "never-created");
    node.send(message(stranger, topic, "never-created", 4))
        .await
        .expect("its id matches its topic and name: re-attached");
    let unknown_topic = producer_id(&TopicName::new("/default/nope").expect("valid"), "p");
    let error = node
        .send(message(unknown_topic, "/default/nope", "p", 5))
        .await
        .expect_err("no such topic");
    assert_eq!(error.code(), Code::Unavailable, "{error}");
    let log = stored(storage.as_ref(), topic).await;
    let offsets: Vec<u64> = log
        .iter()
        .map(|m| m.msg_id.as_ref().expect("msg_id").topic_offset)
        .collect();
    assert_eq!(offsets, [0, 1, 2]);
    node.stop().await;
}

#[tokio::test]
async fn a_draining_node_refuses_new_work_and_closes_health() {
    let node = start(memory()).await;
    let topic = "/default/drain";
    let id = node
        .create(create_request(topic, "p", DispatchStrategy::Reliable))
        .await
        .expect("created");
    node.lifecycle.drain();
    assert_eq!(node.health(id).await, ClientStatus::Close);
    for error in [
        node.create(create_request(topic, "p", DispatchStrategy::Reliable))
            .await
            .expect_err("draining"),
        node.send(message(id, topic, "p", 1))
            .await
            .expect_err("draining"),
    ] {
        assert_eq!(error.code(), Code::Unavailable, "{error}");
    }
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_exclusive_producer_released_while_quiet_must_create_again_and_is_refused() {
    let node = start(memory()).await;
    let topic = "/default/solo";
    let exclusive = ProducerRequest {
        producer_access_mode: ProducerAccessMode::Exclusive.into(),
        ..create_request(topic, "p", DispatchStrategy::Reliable)
    };
    let p = node.create(exclusive.clone()).await.expect("exclusive");
    node.send(message(p, topic, "p", 1)).await.expect("sent");
    // P goes quiet past the idle timeout; Q (Shared) registers and P is released.
    tokio::time::advance(DEFAULT_PRODUCER_IDLE_TIMEOUT + Duration::from_secs(1)).await;
    let q = node
        .create(create_request(topic, "q", DispatchStrategy::Reliable))
        .await
        .expect("p released");
    // P's next send is not re-attached as Shared beside Q: it must create again...
    let released = node
        .send(message(p, topic, "p", 2))
        .await
        .expect_err("released");
    assert_eq!(released.code(), Code::Unavailable, "{released}");
    assert!(released.message().contains("create"), "{released}");
    // ... and creating it again as Exclusive is refused while Q writes.
    let refused = node.create(exclusive).await.expect_err("q writes");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused}");
    node.send(message(q, topic, "q", 3)).await.expect("q sends");
    // A Shared P is welcome again.
    node.create(create_request(topic, "p", DispatchStrategy::Reliable))
        .await
        .expect("shared");
    node.send(message(p, topic, "p", 4)).await.expect("sent");
    node.stop().await;
}
