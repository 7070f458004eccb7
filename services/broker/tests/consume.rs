//! The ConsumerService through the generated stubs, served in-process, over the memory storage
//! (tokio's paused clock drives delays and timeouts) and SQLite (a cursor survives a
//! restart): spec B3 subscriptions, B4 reliable delivery, B5 non-reliable consumption, and §1
//! rule 1 on every delivery.

use std::sync::Arc;
use std::time::Duration;

use courier_broker::catalog::{Catalog, Dispatch, decode_record, topic_log_stream};
use courier_broker::consumer::{
    ConsumerConfig, ConsumerService, DEAD_LETTER_DELIVERIES, DEAD_LETTER_REASON, SubscriptionName,
    cursor_stream, dead_letter_stream,
};
use courier_broker::metrics::BrokerMetrics;
use courier_broker::subscription::{SubscriptionConfig, SubscriptionType};
use courier_broker::topic::TopicName;
use courier_impls::grpc::GrpcChannel;
use courier_impls::grpc::proto::danube::consumer_service_client::ConsumerServiceClient;
use courier_impls::grpc::proto::danube::consumer_service_server::ConsumerServiceServer;
use courier_impls::grpc::proto::danube::{
    AckRequest, ConsumerRequest, MsgId, NackRequest, ReceiveRequest, StreamMessage,
};
use courier_impls::grpc::{ChannelOptions, GrpcChannels, InProcessNetwork};
use courier_impls::memory::MemoryStreamStorage;
use courier_impls::sqlite::{SqliteStorageConfig, SqliteStreamStorage};
use courier_traits::storage::{
    AppendRequest, ForwardingStorage, ReadLimits, StorageError, StreamName, StreamStorage,
};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tonic::{Code, Streaming};

const HERE: &str = "http://broker-a.test:6650";
/// Longer than anything a test waits for on the paused clock (the ack timeout is 30 s).
const PATIENCE: Duration = Duration::from_secs(120);

use SubscriptionType::{Exclusive, Failover, KeyShared, Shared};

fn topic(name: &str) -> TopicName {
    TopicName::new(name).expect(name)
}

/// A broker node serving the ConsumerService in-process; stops when dropped.
struct Node {
    catalog: Arc<Catalog>,
    service: ConsumerService,
    metrics: Arc<BrokerMetrics>,
    client: ConsumerServiceClient<GrpcChannel>,
    _stop: oneshot::Sender<()>,
}

async fn start(storage: Arc<dyn StreamStorage>, config: ConsumerConfig) -> Node {
    let catalog = Arc::new(Catalog::open(storage).await.expect("catalog"));
    let metrics = Arc::new(BrokerMetrics::new());
    let service = ConsumerService::with_metrics(catalog.clone(), config, metrics.clone());
    let network = InProcessNetwork::new();
    let listener = network.listen(HERE).expect("listen");
    let (stop, stopped) = oneshot::channel::<()>();
    let router = tonic::transport::Server::builder()
        .add_service(ConsumerServiceServer::new(service.clone()));
    tokio::spawn(router.serve_with_incoming_shutdown(listener, async {
        let _ = stopped.await;
    }));
    let channels = GrpcChannels::in_process(network, ChannelOptions::default());
    Node {
        catalog,
        service,
        metrics,
        client: ConsumerServiceClient::new(channels.channel(HERE).expect("channel")),
        _stop: stop,
    }
}

async fn memory_node(config: ConsumerConfig) -> (Node, Arc<dyn StreamStorage>) {
    let storage: Arc<dyn StreamStorage> = Arc::new(MemoryStreamStorage::new());
    (start(storage.clone(), config).await, storage)
}

/// A memory node with the reliable topic `/default/orders`.
async fn orders_node() -> (Node, Arc<dyn StreamStorage>, TopicName) {
    let (node, storage) = memory_node(ConsumerConfig::default()).await;
    let orders = topic("/default/orders");
    node.create(&orders, Dispatch::Reliable).await;
    (node, storage, orders)
}

fn message(topic: &TopicName, key: Option<&str>, payload: String) -> StreamMessage {
    StreamMessage {
        msg_id: Some(MsgId {
            producer_id: 41,
            topic_name: topic.to_string(),
            broker_addr: HERE.into(),
            topic_offset: 0,
        }),
        payload: payload.into_bytes().into(),
        producer_name: "producer-1".into(),
        routing_key: key.map(str::to_owned),
        ..StreamMessage::default()
    }
}

impl Node {
    /// Creates `topic` with `dispatch` (as the first producer does).
    async fn create(&self, topic: &TopicName, dispatch: Dispatch) {
        self.catalog
            .ensure_topic(topic, dispatch)
            .await
            .expect("topic");
    }

    /// Publishes `count` messages `m<i>` (i from `first`) to `topic`, all with `key`.
    async fn produce(&self, topic: &TopicName, first: u64, count: u64, key: Option<&str>) {
        let entry = self.catalog.topic(topic).expect("topic exists");
        for i in first..first + count {
            entry
                .publish(message(topic, key, format!("m{i}")))
                .await
                .expect("published");
        }
    }

    async fn subscribe_with(
        &self,
        topic: &TopicName,
        subscription: &str,
        consumer: &str,
        kind: SubscriptionType,
        key_filters: Vec<String>,
    ) -> Result<u64, tonic::Status> {
        let response = self
            .client
            .clone()
            .subscribe(ConsumerRequest {
                request_id: 77,
                topic_name: topic.to_string(),
                consumer_name: consumer.into(),
                subscription: subscription.into(),
                subscription_type: kind.into(),
                key_filters,
            })
            .await?
            .into_inner();
        assert_eq!(response.request_id, 77, "echoed");
        assert_eq!(response.consumer_name, consumer);
        Ok(response.consumer_id)
    }

    async fn subscribe(
        &self,
        topic: &TopicName,
        subscription: &str,
        consumer: &str,
        kind: SubscriptionType,
    ) -> u64 {
        self.subscribe_with(topic, subscription, consumer, kind, Vec::new())
            .await
            .expect("subscribed")
    }

    async fn receive(&self, consumer_id: u64) -> Result<Streaming<StreamMessage>, tonic::Status> {
        Ok(self
            .client
            .clone()
            .receive_messages(ReceiveRequest {
                request_id: 5,
                consumer_id,
            })
            .await?
            .into_inner())
    }

    async fn stream(&self, consumer_id: u64) -> Streaming<StreamMessage> {
        self.receive(consumer_id).await.expect("stream")
    }

    async fn ack(&self, delivered: &StreamMessage) {
        let response = self
            .client
            .clone()
            .ack(AckRequest {
                request_id: 9,
                msg_id: delivered.msg_id.clone(),
                subscription_name: delivered.subscription_name.clone(),
            })
            .await
            .expect("acked")
            .into_inner();
        assert_eq!(response.request_id, 9);
    }

    async fn nack(&self, delivered: &StreamMessage, delay_ms: Option<u64>) {
        self.client
            .clone()
            .nack(NackRequest {
                request_id: 10,
                msg_id: delivered.msg_id.clone(),
                subscription_name: delivered.subscription_name.clone(),
                delay_ms,
                reason: Some("cannot handle it".into()),
            })
            .await
            .expect("nacked");
    }
}

/// The next delivery, checked against spec §1 rule 1.
async fn next(stream: &mut Streaming<StreamMessage>, topic: &TopicName) -> StreamMessage {
    let delivered = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("a delivery in time")
        .expect("no error")
        .expect("stream open");
    let msg_id = delivered.msg_id.as_ref().expect("msg_id always set");
    assert_eq!(msg_id.topic_name, topic.as_str());
    assert_eq!(msg_id.producer_id, 41);
    assert_eq!(msg_id.broker_addr, HERE);
    assert_eq!(
        delivered.payload.as_ref(),
        format!("m{}", msg_id.topic_offset).as_bytes(),
        "payload as sent, offset dense from 0"
    );
    assert!(!delivered.subscription_name.is_empty());
    delivered
}

/// Whether the stream delivers nothing for `wait` (on the paused clock).
async fn quiet(stream: &mut Streaming<StreamMessage>, wait: Duration) -> bool {
    tokio::time::timeout(wait, stream.message()).await.is_err()
}

fn offset(delivered: &StreamMessage) -> u64 {
    delivered
        .msg_id
        .as_ref()
        .map_or(u64::MAX, |id| id.topic_offset)
}

async fn next_offsets(
    stream: &mut Streaming<StreamMessage>,
    topic: &TopicName,
    n: usize,
) -> Vec<u64> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(offset(&next(stream, topic).await));
    }
    out
}

#[tokio::test(start_paused = true)]
async fn b4_all_acked_then_reconnected_delivers_nothing_again() {
    let (node, _, orders) = orders_node().await;
    node.produce(&orders, 0, 2, None).await;
    let id = node.subscribe(&orders, "billing", "c1", Exclusive).await;
    assert!(node.service.holds(id));
    // A new subscription starts at the tail: m0 and m1 came before it.
    node.produce(&orders, 2, 4, None).await;
    let mut stream = node.stream(id).await;
    for expected in 2..6 {
        let delivered = next(&mut stream, &orders).await;
        assert_eq!(offset(&delivered), expected);
        assert_eq!(delivered.subscription_name, "billing");
        node.ack(&delivered).await;
    }
    drop(stream);
    let mut stream = node.stream(id).await;
    assert!(
        quiet(&mut stream, Duration::from_secs(90)).await,
        "nothing again"
    );
    // Another consumer of the same name takes the subscription over: still nothing old.
    let taken = node.subscribe(&orders, "billing", "c1", Exclusive).await;
    assert!(!node.service.holds(id) && node.service.holds(taken));
    assert!(
        tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("the replaced stream ends")
            .map_or(true, |m| m.is_none()),
    );
    let mut stream = node.stream(taken).await;
    assert!(quiet(&mut stream, Duration::from_secs(90)).await);
    node.produce(&orders, 6, 1, None).await;
    assert_eq!(offset(&next(&mut stream, &orders).await), 6);
}

#[tokio::test(start_paused = true)]
async fn b4_unacked_messages_come_again_at_once_when_the_stream_closes() {
    let (node, _, orders) = orders_node().await;
    let id = node.subscribe(&orders, "s", "c1", Shared).await;
    node.produce(&orders, 0, 3, None).await;
    let mut stream = node.stream(id).await;
    let first = next(&mut stream, &orders).await;
    node.ack(&first).await;
    assert_eq!(next_offsets(&mut stream, &orders, 2).await, [1, 2]);
    drop(stream);
    let reopened_at = Instant::now();
    let mut stream = node.stream(id).await;
    assert_eq!(next_offsets(&mut stream, &orders, 2).await, [1, 2]);
    assert!(reopened_at.elapsed() < Duration::from_secs(1), "at once");
}

#[tokio::test(start_paused = true)]
async fn b4_a_nack_with_a_delay_redelivers_after_it() {
    let (node, _, orders) = orders_node().await;
    let id = node.subscribe(&orders, "s", "c1", Exclusive).await;
    node.produce(&orders, 0, 2, None).await;
    let mut stream = node.stream(id).await;
    let first = next(&mut stream, &orders).await;
    let nacked_at = Instant::now();
    node.nack(&first, Some(5_000)).await;
    let second = next(&mut stream, &orders).await;
    assert_eq!(offset(&second), 1, "the next one meanwhile");
    node.ack(&second).await;
    let again = next(&mut stream, &orders).await;
    assert_eq!(offset(&again), 0);
    let waited = nacked_at.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
    // Without a delay: the default, 1 s after this second failure doubled to 2 s.
    let nacked_at = Instant::now();
    node.nack(&again, None).await;
    assert_eq!(offset(&next(&mut stream, &orders).await), 0);
    let waited = nacked_at.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn b4_an_unacked_message_comes_again_after_the_ack_timeout() {
    let (node, _, orders) = orders_node().await;
    let id = node.subscribe(&orders, "s", "c1", Exclusive).await;
    node.produce(&orders, 0, 1, None).await;
    let mut stream = node.stream(id).await;
    let sent_at = Instant::now();
    assert_eq!(offset(&next(&mut stream, &orders).await), 0);
    let again = next(&mut stream, &orders).await;
    assert_eq!(offset(&again), 0);
    let waited = sent_at.elapsed();
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_secs(31),
        "{waited:?}"
    );
    node.ack(&again).await;
    assert!(quiet(&mut stream, Duration::from_secs(100)).await);
}

#[tokio::test(start_paused = true)]
async fn b4_the_sixth_failure_dead_letters_and_the_subscription_moves_on() {
    let (node, storage, orders) = orders_node().await;
    let id = node.subscribe(&orders, "s", "c1", Exclusive).await;
    node.produce(&orders, 0, 2, None).await;
    let mut stream = node.stream(id).await;
    let first = next(&mut stream, &orders).await;
    let second = next(&mut stream, &orders).await;
    node.ack(&second).await;
    let mut delivered = first;
    for _ in 0..5 {
        node.nack(&delivered, Some(0)).await;
        delivered = next(&mut stream, &orders).await;
        assert_eq!(offset(&delivered), 0, "redelivered");
    }
    node.nack(&delivered, Some(0)).await;
    assert!(
        quiet(&mut stream, Duration::from_secs(60)).await,
        "given up"
    );
    let stream_name = dead_letter_stream(&orders, &SubscriptionName::new("s").expect("valid"));
    let batch = storage
        .read(&stream_name, None, ReadLimits::default())
        .await
        .expect("dead letters stored");
    assert_eq!(batch.records.len(), 1);
    let dead = decode_record(&batch.records[0].data).expect("a StreamMessage");
    assert_eq!(dead.payload.as_ref(), b"m0");
    assert_eq!(
        dead.attributes.get(DEAD_LETTER_REASON).map(String::as_str),
        Some("nacked: cannot handle it")
    );
    assert_eq!(
        dead.attributes
            .get(DEAD_LETTER_DELIVERIES)
            .map(String::as_str),
        Some("6")
    );
    // The cursor moved past it: a restarted subscription starts after both.
    node.service.shutdown().await;
    let (node2, _) = (start(storage.clone(), ConsumerConfig::default()).await, ());
    let id = node2.subscribe(&orders, "s", "c1", Exclusive).await;
    let mut stream = node2.stream(id).await;
    node2.produce(&orders, 2, 1, None).await;
    assert_eq!(offset(&next(&mut stream, &orders).await), 2);
}

#[tokio::test(start_paused = true)]
async fn b3_exclusive_refuses_another_name_and_the_same_name_takes_over() {
    let (node, _, orders) = orders_node().await;
    let first = node.subscribe(&orders, "s", "owner", Exclusive).await;
    let _stream = node.stream(first).await;
    let refused = node
        .subscribe_with(&orders, "s", "intruder", Exclusive, Vec::new())
        .await
        .expect_err("held");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("owner"), "{refused:?}");
    let mismatch = node
        .subscribe_with(&orders, "s", "owner", Shared, Vec::new())
        .await
        .expect_err("type mismatch");
    assert_eq!(mismatch.code(), Code::FailedPrecondition);
    let second = node.subscribe(&orders, "s", "owner", Exclusive).await;
    assert_ne!(first, second);
    assert!(!node.service.holds(first));
    let stale = node.receive(first).await.expect_err("replaced");
    assert_eq!(stale.code(), Code::Unavailable);
    let unknown = node.receive(12345).await.expect_err("never existed");
    assert_eq!(unknown.code(), Code::Unavailable);
    // Other subscriptions are independent.
    node.subscribe(&orders, "other", "intruder", Exclusive)
        .await;
}

#[tokio::test(start_paused = true)]
async fn b3_shared_spreads_round_robin() {
    let (node, _, orders) = orders_node().await;
    let a = node.subscribe(&orders, "s", "a", Shared).await;
    let b = node.subscribe(&orders, "s", "b", Shared).await;
    let mut stream_a = node.stream(a).await;
    let mut stream_b = node.stream(b).await;
    node.produce(&orders, 0, 6, None).await;
    let got_a = next_offsets(&mut stream_a, &orders, 3).await;
    let got_b = next_offsets(&mut stream_b, &orders, 3).await;
    assert_eq!(got_a, [0, 2, 4]);
    assert_eq!(got_b, [1, 3, 5]);
}

#[tokio::test(start_paused = true)]
async fn b3_failover_switches_to_the_next_consumer_with_the_in_flight_messages() {
    let (node, _, orders) = orders_node().await;
    let active = node.subscribe(&orders, "s", "active", Failover).await;
    let standby = node.subscribe(&orders, "s", "standby", Failover).await;
    let mut active_stream = node.stream(active).await;
    let mut standby_stream = node.stream(standby).await;
    node.produce(&orders, 0, 3, None).await;
    let first = next(&mut active_stream, &orders).await;
    node.ack(&first).await;
    assert_eq!(next_offsets(&mut active_stream, &orders, 2).await, [1, 2]);
    assert!(quiet(&mut standby_stream, Duration::from_secs(1)).await);
    drop(active_stream);
    assert_eq!(next_offsets(&mut standby_stream, &orders, 2).await, [1, 2]);
    node.produce(&orders, 3, 1, None).await;
    assert_eq!(offset(&next(&mut standby_stream, &orders).await), 3);
}

#[tokio::test(start_paused = true)]
async fn b3_key_shared_keeps_keys_on_consumers_by_their_filters() {
    let (node, _, orders) = orders_node().await;
    let eu = node
        .subscribe_with(&orders, "s", "eu", KeyShared, vec!["eu-*".into()])
        .await
        .expect("eu");
    let us = node
        .subscribe_with(&orders, "s", "us", KeyShared, vec!["us-?".into()])
        .await
        .expect("us");
    let mut eu_stream = node.stream(eu).await;
    let mut us_stream = node.stream(us).await;
    node.produce(&orders, 0, 1, Some("eu-west")).await;
    node.produce(&orders, 1, 1, Some("us-1")).await;
    node.produce(&orders, 2, 1, Some("eu-west")).await;
    node.produce(&orders, 3, 1, Some("us-1")).await;
    assert_eq!(next_offsets(&mut eu_stream, &orders, 2).await, [0, 2]);
    assert_eq!(next_offsets(&mut us_stream, &orders, 2).await, [1, 3]);
    // No routing key: the producer's name is the key ("producer-1" matches neither).
    node.produce(&orders, 4, 1, None).await;
    assert!(quiet(&mut eu_stream, Duration::from_secs(1)).await);
    assert!(quiet(&mut us_stream, Duration::from_secs(1)).await);
}

#[tokio::test(start_paused = true)]
async fn b2_bad_subscribe_requests_and_unknown_topics_are_refused() {
    let (node, _, orders) = orders_node().await;
    let missing = node
        .subscribe_with(&topic("/default/none"), "s", "c", Shared, Vec::new())
        .await
        .expect_err("unknown topic");
    assert_eq!(missing.code(), Code::NotFound);
    for (topic_name, subscription, consumer, kind) in [
        ("/a", "s", "c", 1),
        ("/default/orders", "", "c", 1),
        ("/default/orders", "a/b", "c", 1),
        ("/default/orders", "s", "", 1),
        ("/default/orders", "s", "c", 9),
    ] {
        let status = node
            .client
            .clone()
            .subscribe(ConsumerRequest {
                request_id: 1,
                topic_name: topic_name.into(),
                consumer_name: consumer.into(),
                subscription: subscription.into(),
                subscription_type: kind,
                key_filters: Vec::new(),
            })
            .await
            .expect_err("invalid");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }
    let no_msg_id = node
        .client
        .clone()
        .ack(AckRequest {
            request_id: 1,
            msg_id: None,
            subscription_name: "s".into(),
        })
        .await
        .expect_err("no msg_id");
    assert_eq!(no_msg_id.code(), Code::InvalidArgument);
    let unknown = node
        .client
        .clone()
        .ack(AckRequest {
            request_id: 1,
            msg_id: Some(MsgId {
                topic_name: orders.to_string(),
                ..MsgId::default()
            }),
            subscription_name: "nobody".into(),
        })
        .await
        .expect_err("unknown subscription");
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test(start_paused = true)]
async fn b5_non_reliable_is_live_only_bounded_and_stores_nothing() {
    let config = ConsumerConfig {
        subscription: SubscriptionConfig {
            consumer_queue: 3,
            ..SubscriptionConfig::default()
        },
        ..ConsumerConfig::default()
    };
    let (node, storage) = memory_node(config).await;
    let events = topic("/default/events");
    node.create(&events, Dispatch::NonReliable).await;
    node.produce(&events, 0, 2, None).await;
    let id = node.subscribe(&events, "live", "c1", Shared).await;
    // Live only: m0 and m1 went to nobody. The consumer buffers before its stream opens.
    node.produce(&events, 2, 5, None).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let name = SubscriptionName::new("live").expect("valid");
    assert_eq!(node.service.dropped(&events, &name), Some(2), "queue of 3");
    let mut stream = node.stream(id).await;
    let got = next_offsets(&mut stream, &events, 3).await;
    assert_eq!(got, [2, 3, 4]);
    let delivered = next_offsets(&mut stream, &events, 0).await;
    assert!(delivered.is_empty());
    node.produce(&events, 7, 1, None).await;
    let last = next(&mut stream, &events).await;
    assert_eq!(offset(&last), 7);
    // Ack and Nack are accepted and change nothing.
    node.ack(&last).await;
    node.nack(&last, Some(0)).await;
    assert!(quiet(&mut stream, Duration::from_secs(60)).await);
    assert!(matches!(
        storage.head(&cursor_stream(&events, &name)).await,
        Err(StorageError::NotFound { .. })
    ));
}

#[tokio::test]
async fn b4_on_sqlite_the_cursor_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("broker.db");
    let open = || async {
        let storage = SqliteStreamStorage::connect(&path, SqliteStorageConfig::default())
            .await
            .expect("sqlite");
        let storage: Arc<dyn StreamStorage> = Arc::new(storage);
        storage
    };
    let orders = topic("/default/orders");
    // Every checkpoint rotates to a new cursor generation: the restart reads through one.
    let config = ConsumerConfig {
        cursor_rotate_every: 1,
        ..ConsumerConfig::default()
    };
    let old_id = {
        let node = start(open().await, config.clone()).await;
        node.create(&orders, Dispatch::Reliable).await;
        let id = node.subscribe(&orders, "s", "c1", Exclusive).await;
        node.produce(&orders, 0, 5, None).await;
        let mut stream = node.stream(id).await;
        for expected in 0..3 {
            let delivered = next(&mut stream, &orders).await;
            assert_eq!(offset(&delivered), expected);
            node.ack(&delivered).await;
        }
        // 3 and 4 are delivered and not acked when the service stops.
        assert_eq!(next_offsets(&mut stream, &orders, 2).await, [3, 4]);
        node.service.shutdown().await;
        id
    };
    let node = start(open().await, config).await;
    let stale = node.receive(old_id).await.expect_err("ids do not survive");
    assert_eq!(stale.code(), Code::Unavailable);
    let id = node.subscribe(&orders, "s", "c1", Exclusive).await;
    let mut stream = node.stream(id).await;
    assert_eq!(next_offsets(&mut stream, &orders, 2).await, [3, 4]);
    node.produce(&orders, 5, 1, None).await;
    assert_eq!(offset(&next(&mut stream, &orders).await), 5);
}

#[tokio::test(start_paused = true)]
async fn b3_consumers_without_a_stream_past_the_grace_are_detached_on_the_next_subscribe() {
    let (node, _, orders) = orders_node().await;
    let closed = node.subscribe(&orders, "s", "closed", Shared).await;
    drop(node.stream(closed).await);
    let never_streamed = node.subscribe(&orders, "s", "never", Shared).await;
    tokio::time::advance(Duration::from_secs(59)).await;
    let third = node.subscribe(&orders, "s", "third", Shared).await;
    assert!(node.service.holds(closed) && node.service.holds(never_streamed));
    tokio::time::advance(Duration::from_secs(2)).await;
    let fourth = node.subscribe(&orders, "s", "fourth", Shared).await;
    assert!(!node.service.holds(closed) && !node.service.holds(never_streamed));
    assert!(node.service.holds(third) && node.service.holds(fourth));
    let gone = node.receive(closed).await.expect_err("detached");
    assert_eq!(gone.code(), Code::Unavailable);
    // The messages go to those left.
    let mut stream = node.stream(fourth).await;
    let mut third_stream = node.stream(third).await;
    node.produce(&orders, 0, 2, None).await;
    let mut got = next_offsets(&mut stream, &orders, 1).await;
    got.extend(next_offsets(&mut third_stream, &orders, 1).await);
    got.sort_unstable();
    assert_eq!(got, [0, 1]);
}

/// The checkpoints written to the first cursor generation of `subscription` on `topic`.
async fn checkpoints(storage: &dyn StreamStorage, topic: &TopicName, subscription: &str) -> usize {
    let anchor = cursor_stream(topic, &SubscriptionName::new(subscription).expect("valid"));
    let first = StreamName::new(&format!("{anchor}/g0")).expect("valid");
    storage
        .read(&first, None, ReadLimits::default())
        .await
        .expect("cursor generation 0")
        .records
        .len()
}

#[tokio::test(start_paused = true)]
async fn b4_cursor_checkpoints_are_debounced_by_time_and_by_count() {
    let (node, storage, orders) = orders_node().await;
    let id = node.subscribe(&orders, "s", "c1", Exclusive).await;
    assert_eq!(checkpoints(&*storage, &orders, "s").await, 1, "the start");
    node.produce(&orders, 0, 300, None).await;
    let mut stream = node.stream(id).await;
    for _ in 0..10 {
        let delivered = next(&mut stream, &orders).await;
        node.ack(&delivered).await;
    }
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(checkpoints(&*storage, &orders, "s").await, 1, "not per ack");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(checkpoints(&*storage, &orders, "s").await, 2, "1 s after");
    let started = Instant::now();
    for _ in 0..256 {
        let delivered = next(&mut stream, &orders).await;
        node.ack(&delivered).await;
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(checkpoints(&*storage, &orders, "s").await, 3, "at 256 acks");
}

#[tokio::test(start_paused = true)]
async fn a_closed_topic_log_is_not_waited_on_in_a_loop() {
    // Waiting on a closed log returns at once: a task that kept waiting on it would never
    // yield, the paused clock would never move, and this test would hang instead of passing.
    let (node, storage, orders) = orders_node().await;
    storage
        .append(&topic_log_stream(&orders), AppendRequest::close_only())
        .await
        .expect("closed");
    let id = node.subscribe(&orders, "s", "c1", Shared).await;
    let mut stream = node.stream(id).await;
    assert!(quiet(&mut stream, Duration::from_secs(120)).await);
    assert!(node.service.holds(id));
}

impl Node {
    /// Asserts that subscribing is refused over a cap.
    async fn refused_over_cap(&self, topic: &TopicName, subscription: &str, consumer: &str) {
        let refused = self
            .subscribe_with(topic, subscription, consumer, Shared, Vec::new())
            .await
            .expect_err("over the cap");
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused}");
    }
}

/// A memory node with the reliable topic `/default/orders` and `config`.
async fn orders_node_with(config: ConsumerConfig) -> (Node, TopicName) {
    let (node, _) = memory_node(config).await;
    let orders = topic("/default/orders");
    node.create(&orders, Dispatch::Reliable).await;
    (node, orders)
}

#[tokio::test(start_paused = true)]
async fn subscriptions_whose_consumers_left_past_the_grace_free_their_place_under_the_cap() {
    let config = ConsumerConfig {
        max_subscriptions_per_topic: 2,
        ..ConsumerConfig::default()
    };
    let (node, orders) = orders_node_with(config).await;
    let kept = node.subscribe(&orders, "kept", "c", Shared).await;
    let _kept_stream = node.stream(kept).await;
    let left = node.subscribe(&orders, "left", "c", Shared).await;
    let mut stream = node.stream(left).await;
    node.produce(&orders, 0, 2, None).await;
    let first = next(&mut stream, &orders).await;
    assert_eq!(offset(&first), 0);
    node.ack(&first).await;
    drop(stream);
    // Within the grace `left` is still in use.
    node.refused_over_cap(&orders, "new", "c").await;
    tokio::time::advance(Duration::from_secs(61)).await;
    // `left` has nobody past the grace: its place goes to a new name; `kept` streams still.
    let new = node.subscribe(&orders, "new", "c", Shared).await;
    assert!(node.service.holds(kept) && node.service.holds(new));
    assert!(!node.service.holds(left));
    let gone = node
        .receive(left)
        .await
        .expect_err("left with its subscription");
    assert_eq!(gone.code(), Code::Unavailable);
    node.refused_over_cap(&orders, "another", "c").await;
    // Past the grace again, `left` comes back where its cursor was: m0 acked, m1 not.
    tokio::time::advance(Duration::from_secs(61)).await;
    let back = node.subscribe(&orders, "left", "c", Shared).await;
    let mut stream = node.stream(back).await;
    assert_eq!(offset(&next(&mut stream, &orders).await), 1);
}

#[tokio::test(start_paused = true)]
async fn acks_and_nacks_count_only_what_they_settle() {
    let (node, orders) = orders_node_with(ConsumerConfig::default()).await;
    let id = node.subscribe(&orders, "s", "c", Shared).await;
    let mut stream = node.stream(id).await;
    node.produce(&orders, 0, 1, None).await;
    let delivered = next(&mut stream, &orders).await;
    node.ack(&delivered).await;
    node.ack(&delivered).await;
    node.nack(&delivered, None).await;
    let metrics = node.metrics.topic(&orders);
    assert_eq!(metrics.delivered.get(), 1);
    assert_eq!(metrics.acked.get(), 1, "a duplicate ack settles nothing");
    assert_eq!(
        metrics.nacked.get(),
        0,
        "a nack of an acked message settles nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn consumers_whose_stream_ended_do_not_count_against_the_consumer_cap() {
    let config = ConsumerConfig {
        max_consumers_per_subscription: 2,
        ..ConsumerConfig::default()
    };
    let (node, orders) = orders_node_with(config).await;
    for name in ["c1", "c2"] {
        let id = node.subscribe(&orders, "s", name, Shared).await;
        drop(node.stream(id).await);
    }
    // Reconnecting clients get new ids while the old ones are still within their grace.
    let c3 = node.subscribe(&orders, "s", "c1", Shared).await;
    let c4 = node.subscribe(&orders, "s", "c2", Shared).await;
    assert!(node.service.holds(c3) && node.service.holds(c4));
    node.refused_over_cap(&orders, "s", "c5").await;
}

/// A memory storage that counts the reads and waits of one stream (the topic log), to see
/// how often consumers go back to storage.
struct ReadCounting {
    inner: MemoryStreamStorage,
    watched: StreamName,
    reads: std::sync::atomic::AtomicUsize,
}

impl ReadCounting {
    fn count(&self, name: &StreamName) {
        if *name == self.watched {
            self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn reads(&self) -> usize {
        self.reads.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl ForwardingStorage for ReadCounting {
    fn inner(&self) -> &dyn StreamStorage {
        &self.inner
    }
    async fn read(
        &self,
        name: &StreamName,
        from: Option<courier_traits::storage::Offset>,
        limits: ReadLimits,
    ) -> Result<courier_traits::storage::ReadBatch, StorageError> {
        self.count(name);
        self.inner.read(name, from, limits).await
    }
    async fn wait(
        &self,
        name: &StreamName,
        after: &courier_traits::storage::Offset,
        timeout: Duration,
    ) -> Result<courier_traits::storage::WaitOutcome, StorageError> {
        self.count(name);
        self.inner.wait(name, after, timeout).await
    }
}

#[tokio::test]
async fn b4_messages_sent_one_by_one_are_delivered_without_reading_the_log_back() {
    const SENDS: u64 = 200;
    let orders = topic("/default/orders");
    let storage = Arc::new(ReadCounting {
        inner: MemoryStreamStorage::new(),
        watched: topic_log_stream(&orders),
        reads: Default::default(),
    });
    let node = start(storage.clone(), ConsumerConfig::default()).await;
    node.create(&orders, Dispatch::Reliable).await;
    let id = node.subscribe(&orders, "s", "c1", Exclusive).await;
    let mut stream = node.stream(id).await;
    let before = storage.reads();
    for i in 0..SENDS {
        node.produce(&orders, i, 1, None).await;
        let delivered = next(&mut stream, &orders).await;
        assert_eq!(offset(&delivered), i);
        node.ack(&delivered).await;
    }
    let reads = storage.reads() - before;
    // The subscription delivers what the topic's writer hands it; it reads the log only to
    // catch up (and once in a while to look for other nodes' appends), not per message.
    assert!(
        reads < 10,
        "{reads} reads and waits of the log for {SENDS} messages"
    );
}

#[tokio::test(start_paused = true)]
async fn b4_appends_by_another_writer_are_read_from_the_log_in_order_without_duplicates() {
    let (node, storage, orders) = orders_node().await;
    let id = node.subscribe(&orders, "s", "c1", Exclusive).await;
    let mut stream = node.stream(id).await;
    // Another node that still believes it owns the topic (spec §3: both may take sends for a
    // while): its appends never reach this node's subscription from its writer.
    let other = courier_broker::writer::TopicWriter::start(storage, topic_log_stream(&orders));
    let entry = node.catalog.topic(&orders).expect("topic");
    let mut expected = 0;
    for round in 0..20u64 {
        for i in 0..round % 4 {
            let written = other
                .append(message(&orders, None, format!("m{}", expected + i)))
                .await
                .expect("other node's append");
            assert_eq!(written, expected + i);
        }
        expected += round % 4;
        let written = entry
            .publish(message(&orders, None, format!("m{expected}")))
            .await
            .expect("this node's append");
        assert_eq!(written, expected, "offsets stay dense across both writers");
        expected += 1;
    }
    for wanted in 0..expected {
        let delivered = next(&mut stream, &orders).await;
        assert_eq!(offset(&delivered), wanted, "in log order, once");
        node.ack(&delivered).await;
    }
    // Only the other node appends now: its message still arrives (the log is looked at).
    let last = other
        .append(message(&orders, None, format!("m{expected}")))
        .await
        .expect("appended");
    let delivered = next(&mut stream, &orders).await;
    assert_eq!(offset(&delivered), last);
    node.ack(&delivered).await;
    assert!(
        quiet(&mut stream, Duration::from_secs(60)).await,
        "no duplicate"
    );
    other.stop().await;
}

/// A memory storage that, once armed, holds the next cursor checkpoint (an append to a
/// `broker/c/` stream) until released: the subscription's task is then stuck in it.
struct CheckpointHolding {
    inner: MemoryStreamStorage,
    armed: std::sync::atomic::AtomicBool,
    held: tokio::sync::Notify,
    release: tokio::sync::Semaphore,
}

#[async_trait::async_trait]
impl ForwardingStorage for CheckpointHolding {
    fn inner(&self) -> &dyn StreamStorage {
        &self.inner
    }
    async fn append(
        &self,
        name: &StreamName,
        request: AppendRequest,
    ) -> Result<courier_traits::storage::AppendOutcome, StorageError> {
        let checkpoint = name.as_str().starts_with("broker/c/");
        if checkpoint && self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.held.notify_one();
            self.release.acquire().await.expect("open").forget();
        }
        self.inner.append(name, request).await
    }
}

/// Once caught up, a subscription takes each new message in the producer's own call: its task
/// is not on the way (here it is stuck checkpointing the cursor, and messages still flow).
#[tokio::test(start_paused = true)]
async fn b4_a_caught_up_subscription_gets_new_messages_without_its_task() {
    let orders = topic("/default/orders");
    let storage = Arc::new(CheckpointHolding {
        inner: MemoryStreamStorage::new(),
        armed: Default::default(),
        held: tokio::sync::Notify::new(),
        release: tokio::sync::Semaphore::new(0),
    });
    let config = ConsumerConfig {
        cursor_flush_acks: 1,
        ..ConsumerConfig::default()
    };
    let node = start(storage.clone(), config).await;
    node.create(&orders, Dispatch::Reliable).await;
    let id = node.subscribe(&orders, "s", "c1", Exclusive).await;
    let mut stream = node.stream(id).await;
    node.produce(&orders, 0, 1, None).await;
    let first = next(&mut stream, &orders).await;
    storage
        .armed
        .store(true, std::sync::atomic::Ordering::SeqCst);
    node.ack(&first).await;
    // The ack makes the task checkpoint the cursor, which the storage holds.
    storage.held.notified().await;
    node.produce(&orders, 1, 3, None).await;
    assert_eq!(next_offsets(&mut stream, &orders, 3).await, vec![1, 2, 3]);
    storage.release.add_permits(1);
    for offset in 1..4 {
        node.ack(&next_offset_message(&orders, offset)).await;
    }
    node.produce(&orders, 4, 1, None).await;
    assert_eq!(offset(&next(&mut stream, &orders).await), 4);
}

/// The acknowledgement of `offset` on `topic` for subscription `s` (what `next` returned).
fn next_offset_message(topic: &TopicName, offset: u64) -> StreamMessage {
    let mut delivered = message(topic, None, format!("m{offset}"));
    if let Some(id) = delivered.msg_id.as_mut() {
        id.topic_offset = offset;
    }
    delivered.subscription_name = "s".into();
    delivered
}

/// A message handed over by the writer and left unacked comes again after the ack timeout,
/// not only when the subscription's task next wakes for something else.
#[tokio::test(start_paused = true)]
async fn b4_a_handed_over_message_unacked_comes_again_after_a_short_ack_timeout() {
    let config = ConsumerConfig {
        subscription: SubscriptionConfig {
            ack_timeout: Duration::from_secs(1),
            ..SubscriptionConfig::default()
        },
        ..ConsumerConfig::default()
    };
    let (node, _) = memory_node(config).await;
    let orders = topic("/default/orders");
    node.create(&orders, Dispatch::Reliable).await;
    let id = node.subscribe(&orders, "s", "c1", Exclusive).await;
    let mut stream = node.stream(id).await;
    // Caught up: the next messages are handed over by the writer.
    node.produce(&orders, 0, 1, None).await;
    let first = next(&mut stream, &orders).await;
    node.ack(&first).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    node.produce(&orders, 1, 1, None).await;
    let sent_at = Instant::now();
    assert_eq!(offset(&next(&mut stream, &orders).await), 1);
    let again = next(&mut stream, &orders).await;
    assert_eq!(offset(&again), 1);
    let waited = sent_at.elapsed();
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(2),
        "redelivered after {waited:?}"
    );
    node.ack(&again).await;
}
