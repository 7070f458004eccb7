//! The consumer side's caps, through the generated stubs served in-process: subscriptions per
//! topic and consumers per subscription, refused `ResourceExhausted` with the limit's name.

use std::sync::Arc;

use courier_broker::catalog::{Catalog, Dispatch};
use courier_broker::consumer::{ConsumerConfig, ConsumerService};
use courier_broker::topic::TopicName;
use courier_impls::grpc::GrpcChannel;
use courier_impls::grpc::proto::danube::ConsumerRequest;
use courier_impls::grpc::proto::danube::consumer_request::SubscriptionType;
use courier_impls::grpc::proto::danube::consumer_service_client::ConsumerServiceClient;
use courier_impls::grpc::proto::danube::consumer_service_server::ConsumerServiceServer;
use courier_impls::grpc::{ChannelOptions, GrpcChannels, InProcessNetwork};
use courier_impls::memory::MemoryStreamStorage;
use tokio::sync::oneshot;
use tonic::{Code, Status};

const HERE: &str = "http://broker-caps.test:6650";

struct Node {
    client: ConsumerServiceClient<GrpcChannel>,
    _stop: oneshot::Sender<()>,
}

/// A node with the reliable topics `/default/a` and `/default/b`, at most two subscriptions
/// per topic and two consumers per subscription.
async fn node() -> Node {
    let catalog = Arc::new(
        Catalog::open(Arc::new(MemoryStreamStorage::new()))
            .await
            .expect("catalog"),
    );
    for name in ["/default/a", "/default/b"] {
        let topic = TopicName::new(name).expect("valid");
        catalog
            .ensure_topic(&topic, Dispatch::Reliable)
            .await
            .expect("topic");
    }
    let config = ConsumerConfig {
        max_subscriptions_per_topic: 2,
        max_consumers_per_subscription: 2,
        ..ConsumerConfig::default()
    };
    let service = ConsumerService::new(catalog, config);
    let network = InProcessNetwork::new();
    let listener = network.listen(HERE).expect("listen");
    let (stop, stopped) = oneshot::channel::<()>();
    let router =
        tonic::transport::Server::builder().add_service(ConsumerServiceServer::new(service));
    tokio::spawn(router.serve_with_incoming_shutdown(listener, async {
        let _ = stopped.await;
    }));
    let channels = GrpcChannels::in_process(network, ChannelOptions::default());
    Node {
        client: ConsumerServiceClient::new(channels.channel(HERE).expect("channel")),
        _stop: stop,
    }
}

impl Node {
    async fn subscribe(
        &self,
        topic: &str,
        subscription: &str,
        consumer: &str,
        kind: SubscriptionType,
    ) -> Result<u64, Status> {
        let request = ConsumerRequest {
            request_id: 1,
            topic_name: topic.into(),
            consumer_name: consumer.into(),
            subscription: subscription.into(),
            subscription_type: kind.into(),
            ..ConsumerRequest::default()
        };
        let response = self.client.clone().subscribe(request).await?;
        Ok(response.into_inner().consumer_id)
    }
}

fn refused(outcome: Result<u64, Status>, limit: &str) {
    let status = outcome.expect_err("over the cap");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains(limit), "{status:?}");
}

#[tokio::test]
async fn a_topic_takes_at_most_its_limit_of_subscriptions() {
    let node = node().await;
    for subscription in ["s1", "s2"] {
        node.subscribe("/default/a", subscription, "c", SubscriptionType::Shared)
            .await
            .expect("within the cap");
    }
    refused(
        node.subscribe("/default/a", "s3", "c", SubscriptionType::Shared)
            .await,
        "max_subscriptions_per_topic",
    );
    // Joining an existing subscription is no new one; other topics count alone.
    node.subscribe("/default/a", "s1", "c2", SubscriptionType::Shared)
        .await
        .expect("existing subscription");
    node.subscribe("/default/b", "s3", "c", SubscriptionType::Shared)
        .await
        .expect("another topic");
}

#[tokio::test]
async fn a_subscription_takes_at_most_its_limit_of_consumers() {
    let node = node().await;
    for kind in [SubscriptionType::Shared, SubscriptionType::Failover] {
        let subscription = format!("{kind:?}");
        for consumer in ["c1", "c2"] {
            node.subscribe("/default/a", &subscription, consumer, kind)
                .await
                .expect("within the cap");
        }
        refused(
            node.subscribe("/default/a", &subscription, "c3", kind)
                .await,
            "max_consumers_per_subscription",
        );
    }
    // Exclusive: the same name takes over however often it comes back.
    for _ in 0..3 {
        node.subscribe("/default/b", "solo", "owner", SubscriptionType::Exclusive)
            .await
            .expect("takeover");
    }
}
