//! Producing and consuming through one [`BrokerServer`], in-process over the generated stubs:
//! deliveries carry the producer's id, this node's URL and dense offsets (spec §1 rule 1),
//! health checks answer `OK` for held consumers and `CLOSE` otherwise (rule 6), and a graceful
//! shutdown ends consumer streams and keeps the acked cursor for the next run.

mod support;

use std::sync::Arc;
use std::time::Duration;

use courier_broker::consumer::MAX_ACK_MANY_OFFSETS;
use courier_broker::directory::NodeUrls;
use courier_broker::server::{BrokerConfig, BrokerServer, ServeError};
use courier_impls::grpc::GrpcChannel;
use courier_impls::grpc::proto::courier_broker::AckManyRequest;
use courier_impls::grpc::proto::courier_broker::ack_batch_service_client::AckBatchServiceClient;
use courier_impls::grpc::proto::danube::consumer_request::SubscriptionType;
use courier_impls::grpc::proto::danube::consumer_service_client::ConsumerServiceClient;
use courier_impls::grpc::proto::danube::health_check_client::HealthCheckClient;
use courier_impls::grpc::proto::danube::health_check_request::ClientType;
use courier_impls::grpc::proto::danube::health_check_response::ClientStatus;
use courier_impls::grpc::proto::danube::producer_service_client::ProducerServiceClient;
use courier_impls::grpc::proto::danube::{
    AckRequest, ConsumerRequest, HealthCheckRequest, MsgId, ReceiveRequest, StreamMessage,
};
use courier_impls::grpc::{ChannelOptions, GrpcChannels, InProcessNetwork};
use courier_impls::memory::MemoryStreamStorage;
use courier_traits::storage::StreamStorage;
use support::messages::{reliable_producer, stream_message};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Streaming;

const HERE: &str = "http://broker-a.test:6650";
const TOPIC: &str = "/default/orders";
const BOUND: Duration = Duration::from_secs(10);

struct Node {
    channel: GrpcChannel,
    stop: Option<oneshot::Sender<()>>,
    served: JoinHandle<Result<(), ServeError>>,
}

async fn start(storage: Arc<dyn StreamStorage>) -> Node {
    let config = BrokerConfig::new(NodeUrls::same(HERE).expect("valid"));
    let server = BrokerServer::open(storage, config).await.expect("open");
    let network = InProcessNetwork::new();
    let listener = network.listen(HERE).expect("listen");
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(server.serve_with_incoming(listener, async {
        let _ = stopped.await;
    }));
    let channels = GrpcChannels::in_process(network, ChannelOptions::default());
    Node {
        channel: channels.channel(HERE).expect("channel"),
        stop: Some(stop),
        served,
    }
}

impl Node {
    async fn producer(&self) -> u64 {
        ProducerServiceClient::new(self.channel.clone())
            .create_producer(reliable_producer(TOPIC, "p1", 1))
            .await
            .expect("producer")
            .into_inner()
            .producer_id
    }

    async fn send(&self, producer_id: u64, payload: &str) {
        ProducerServiceClient::new(self.channel.clone())
            .send_message(stream_message(TOPIC, producer_id, "p1", 2, payload))
            .await
            .expect("sent");
    }

    async fn subscribe(&self) -> (u64, Streaming<StreamMessage>) {
        let mut consumers = ConsumerServiceClient::new(self.channel.clone());
        let id = consumers
            .subscribe(ConsumerRequest {
                request_id: 3,
                topic_name: TOPIC.into(),
                consumer_name: "c1".into(),
                subscription: "sub".into(),
                subscription_type: SubscriptionType::Exclusive.into(),
                key_filters: Vec::new(),
            })
            .await
            .expect("subscribed")
            .into_inner()
            .consumer_id;
        let stream = consumers
            .receive_messages(ReceiveRequest {
                request_id: 4,
                consumer_id: id,
            })
            .await
            .expect("stream")
            .into_inner();
        (id, stream)
    }

    async fn ack(&self, delivered: &StreamMessage) {
        ConsumerServiceClient::new(self.channel.clone())
            .ack(AckRequest {
                request_id: 5,
                msg_id: delivered.msg_id.clone(),
                subscription_name: delivered.subscription_name.clone(),
            })
            .await
            .expect("acked");
    }

    async fn ack_many(&self, subscription: &str, offsets: &[u64]) -> Result<(), tonic::Status> {
        AckBatchServiceClient::new(self.channel.clone())
            .ack_many(AckManyRequest {
                request_id: 7,
                topic_name: TOPIC.into(),
                subscription_name: subscription.into(),
                topic_offsets: offsets.to_vec(),
            })
            .await
            .map(drop)
    }

    async fn consumer_health(&self, id: u64) -> ClientStatus {
        let status = HealthCheckClient::new(self.channel.clone())
            .health_check(HealthCheckRequest {
                request_id: 6,
                client: ClientType::Consumer.into(),
                id,
            })
            .await
            .expect("health")
            .into_inner()
            .status;
        ClientStatus::try_from(status).expect("known")
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(BOUND, self.served)
            .await
            .expect("drained in time: consumer streams ended")
            .expect("task")
            .expect("served");
    }
}

async fn next(stream: &mut Streaming<StreamMessage>) -> Option<StreamMessage> {
    tokio::time::timeout(BOUND, stream.message())
        .await
        .expect("in time")
        .expect("no error")
}

#[tokio::test]
async fn produced_messages_are_consumed_acked_and_not_delivered_again_after_a_restart() {
    let storage: Arc<dyn StreamStorage> = Arc::new(MemoryStreamStorage::new());
    let node = start(storage.clone()).await;
    let producer_id = node.producer().await;
    let (consumer_id, mut stream) = node.subscribe().await;
    assert_eq!(node.consumer_health(consumer_id).await, ClientStatus::Ok);
    assert_eq!(
        node.consumer_health(consumer_id ^ 1).await,
        ClientStatus::Close
    );
    for payload in ["a", "b", "c"] {
        node.send(producer_id, payload).await;
    }
    for (offset, payload) in [(0, "a"), (1, "b"), (2, "c")] {
        let delivered = next(&mut stream).await.expect("a delivery");
        assert_eq!(
            delivered.msg_id,
            Some(MsgId {
                producer_id,
                topic_name: TOPIC.into(),
                broker_addr: HERE.into(),
                topic_offset: offset,
            })
        );
        assert_eq!(delivered.payload.as_ref(), payload.as_bytes());
        assert_eq!(delivered.subscription_name, "sub");
        node.ack(&delivered).await;
    }
    node.stop().await;
    assert_eq!(
        next(&mut stream).await,
        None,
        "the stream ended with the node"
    );

    let node = start(storage).await;
    assert_eq!(node.consumer_health(consumer_id).await, ClientStatus::Close);
    let producer_id = node.producer().await;
    let (consumer_id, mut stream) = node.subscribe().await;
    assert_eq!(node.consumer_health(consumer_id).await, ClientStatus::Ok);
    node.send(producer_id, "d").await;
    let delivered = next(&mut stream).await.expect("a delivery");
    assert_eq!(
        delivered.msg_id.map(|id| id.topic_offset),
        Some(3),
        "a, b, c not again"
    );
    node.stop().await;
}

#[tokio::test]
async fn ack_many_settles_each_offset_as_one_ack_would() {
    let storage: Arc<dyn StreamStorage> = Arc::new(MemoryStreamStorage::new());
    let node = start(storage.clone()).await;
    let producer_id = node.producer().await;
    let (_, mut stream) = node.subscribe().await;
    for payload in ["a", "b", "c", "d"] {
        node.send(producer_id, payload).await;
    }
    for _ in 0..4 {
        next(&mut stream).await.expect("a delivery");
    }
    // Out of order, a duplicate and an offset never delivered: all settle as Acks would.
    node.ack_many("sub", &[2, 0, 1, 1, 9]).await.expect("acked");
    let error = node
        .ack_many("other", &[3])
        .await
        .expect_err("no such subscription");
    assert_eq!(error.code(), tonic::Code::NotFound, "{error:?}");
    let error = node
        .ack_many("", &[3])
        .await
        .expect_err("no subscription name");
    assert_eq!(error.code(), tonic::Code::InvalidArgument, "{error:?}");
    // One call settles at most MAX_ACK_MANY_OFFSETS offsets under its subscription's lock.
    let too_many: Vec<u64> = (100..).take(MAX_ACK_MANY_OFFSETS + 1).collect();
    let error = node
        .ack_many("sub", &too_many)
        .await
        .expect_err("too many offsets");
    assert_eq!(error.code(), tonic::Code::InvalidArgument, "{error:?}");
    assert!(error.message().contains("topic_offsets"), "{error:?}");
    node.ack_many("sub", &too_many[..MAX_ACK_MANY_OFFSETS])
        .await
        .expect("at the limit: acked (offsets never delivered settle nothing)");
    node.stop().await;

    // The cursor moved over the acked prefix 0..=2 only: d comes again, nothing before it.
    let node = start(storage).await;
    let (_, mut stream) = node.subscribe().await;
    let delivered = next(&mut stream).await.expect("a delivery");
    assert_eq!(delivered.msg_id.map(|id| id.topic_offset), Some(3));
    assert_eq!(delivered.payload.as_ref(), b"d");
    node.stop().await;
}
