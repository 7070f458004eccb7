//! The universal bus suite against `EtcdBus` on a real etcd from the testkit, plus the
//! etcd-specific promises: one lease per bus, compaction reported, frames expire.

use std::time::Duration;

use async_trait::async_trait;
use courier::bus::{BusError, MessageBus, SubscribeFrom, Topic};
use courier::impls::etcd::proto::etcdserverpb::{
    CompactionRequest, LeaseLeasesRequest, RangeRequest,
};
use courier::impls::etcd::{EtcdBus, EtcdBusConfig, EtcdClient, position_of, revision_of};
use courier_testkit::fixtures::{Etcd, Mode, SharedFixture, unique_prefix, with_private_servers};
use courier_testkit::suites::BusFactory;
use futures::StreamExt;

/// The run's shared etcd (a private one in the restart cases and where a test counts leases or
/// compacts), a key prefix per factory; every `connect` is a new bus (a node) on it, same prefix.
struct EtcdFactory {
    etcd: SharedFixture<Etcd>,
    endpoints: Vec<String>,
    prefix: String,
}

impl EtcdFactory {
    async fn start() -> EtcdFactory {
        let etcd = Etcd::shared().await.expect("etcd starts");
        let endpoints = etcd.endpoints();
        EtcdFactory {
            etcd: SharedFixture::new(etcd),
            endpoints,
            prefix: format!("courier-test/{}", unique_prefix()),
        }
    }

    /// A plain etcd client, for what the bus does not offer (listing leases, compacting).
    async fn raw_client(&self) -> EtcdClient {
        EtcdClient::connect(&self.endpoints, Duration::from_secs(5))
            .await
            .expect("etcd client")
    }

    fn config(&self) -> EtcdBusConfig {
        EtcdBusConfig::default().with_prefix(self.prefix.clone())
    }
}

#[async_trait]
impl BusFactory for EtcdFactory {
    type Bus = EtcdBus;
    async fn connect(&self) -> EtcdBus {
        EtcdBus::connect(&self.endpoints, self.config())
            .await
            .expect("connect to etcd")
    }
    async fn stop_server(&self) -> Result<(), String> {
        self.etcd.stop().await
    }
    async fn start_server(&self) -> Result<(), String> {
        self.etcd.start().await
    }
}

mod etcd_bus {
    use super::*;

    courier_testkit::bus_suite!(
        factory = EtcdFactory::start().await,
        persistent = true,
        resume = true,
        ordered = true,
        exactly_once = true,
        lag_reporting = true,
        shared = true,
        survives_restart = true,
    );
}

async fn lease_count(factory: &EtcdFactory) -> usize {
    let client = factory.raw_client().await;
    let leases = client.lease().lease_leases(LeaseLeasesRequest {}).await;
    leases.expect("list leases").into_inner().leases.len()
}

#[tokio::test]
async fn one_lease_per_bus_not_per_message() {
    // Private: every bus on a shared server holds a lease.
    let factory = with_private_servers(EtcdFactory::start()).await;
    if factory.etcd.lock().await.mode() == Mode::Env {
        return; // a shared server's lease count moves with other tests
    }
    let before = lease_count(&factory).await;
    let bus = factory.connect().await;
    let topic = Topic::new("leases").expect("valid");
    for i in 0..20 {
        bus.publish(&topic, format!("m{i}").into())
            .await
            .expect("publish");
    }
    assert_eq!(
        lease_count(&factory).await,
        before + 1,
        "one lease for the bus, whatever the message count"
    );
    bus.close().await.expect("close");
    assert_eq!(
        lease_count(&factory).await,
        before,
        "close revokes the lease"
    );
}

#[tokio::test]
async fn resuming_from_a_compacted_revision_is_an_explicit_error() {
    // Private: compaction would cut the history of every test on a shared server.
    let factory = with_private_servers(EtcdFactory::start()).await;
    let bus = factory.connect().await;
    let topic = Topic::new("compacted").expect("valid");
    let first = bus.publish(&topic, "old".into()).await.expect("publish");
    let mut last = first.clone();
    for i in 0..5 {
        last = bus
            .publish(&topic, format!("newer {i}").into())
            .await
            .expect("publish");
    }
    let client = factory.raw_client().await;
    let last_revision = revision_of(last.position.as_ref().expect("position")).expect("revision");
    let compaction = CompactionRequest {
        revision: last_revision,
        physical: false,
    };
    client.kv().compact(compaction).await.expect("compact");
    let from = SubscribeFrom::After(first.position.expect("position"));
    match bus.subscribe(&topic, from).await {
        Err(BusError::PositionUnavailable { reason, .. }) => {
            assert!(reason.contains("compacted"), "{reason}")
        }
        Err(other) => panic!("expected PositionUnavailable, got {other}"),
        Ok(_) => panic!("expected PositionUnavailable, got a subscription"),
    }
}

#[tokio::test]
async fn frames_expire_with_the_lease_but_stay_in_history() {
    let factory = EtcdFactory::start().await;
    let config = factory.config().with_lease_ttl(Duration::from_secs(2));
    let bus = EtcdBus::connect(&factory.endpoints, config)
        .await
        .expect("connect");
    let topic = Topic::new("expiring").expect("valid");
    let published = bus
        .publish(&topic, "short-lived".into())
        .await
        .expect("publish");
    bus.close().await.expect("close revokes the lease");
    let client = factory.raw_client().await;
    let key = format!("{}/expiring", factory.prefix);
    let read = RangeRequest {
        key: key.into_bytes(),
        ..RangeRequest::default()
    };
    let current = client.kv().range(read).await.expect("get").into_inner();
    assert!(
        current.kvs.is_empty(),
        "the frame left the key space with its lease"
    );
    // A new bus can still replay it from history by position.
    let reader = factory.connect().await;
    let position = published.position.expect("position");
    let previous = position_of(revision_of(&position).expect("revision") - 1);
    let mut sub = reader
        .subscribe(&topic, SubscribeFrom::After(previous))
        .await
        .expect("subscribe");
    let message = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("in time")
        .expect("open")
        .expect("message");
    assert_eq!(&message.payload[..], b"short-lived");
    assert_eq!(message.id, published.id);
}

#[tokio::test]
async fn unreachable_server_is_a_retryable_error_within_the_timeout() {
    // Port 1 on loopback: nothing listens there.
    let config = EtcdBusConfig::default().with_request_timeout(Duration::from_secs(1));
    let connect = EtcdBus::connect(&["http://127.0.0.1:1"], config);
    match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Err(err)) => assert!(courier::Classify::is_retryable(&err), "{err}"),
        Ok(Ok(_)) => panic!("connected to a closed port"),
        Err(_) => panic!("connect to a closed port did not fail within 10 s"),
    }
}

#[tokio::test]
async fn endpoints_without_a_scheme_are_plain_http_and_others_are_refused() {
    let factory = EtcdFactory::start().await;
    let bare: Vec<String> = factory
        .endpoints
        .iter()
        .map(|e| e.trim_start_matches("http://").to_owned())
        .collect();
    let bus = EtcdBus::connect(&bare, factory.config())
        .await
        .expect("host:port is http://host:port");
    let topic = Topic::new("bare").expect("valid");
    bus.publish(&topic, "over a bare endpoint".into())
        .await
        .expect("publish");
    bus.close().await.expect("close");

    for refused in [
        &["https://127.0.0.1:2379"][..],
        &["unix:///tmp/etcd.sock"],
        &[],
    ] {
        match EtcdBus::connect(refused, factory.config()).await {
            Err(BusError::InvalidInput(input)) => assert!(
                input.field.starts_with("etcd endpoint"),
                "{refused:?}: {input}"
            ),
            Err(other) => panic!("{refused:?}: expected InvalidInput, got {other}"),
            Ok(_) => panic!("{refused:?}: expected InvalidInput, got a bus"),
        }
    }
}
