//! The cluster when its bus misbehaves the way real backends do under faults: a publish whose
//! answer is lost although the backend stored it ("unclear"), a message stored twice, a bus
//! that is down for one node only, a frozen bus that answers nothing. Two hubs share one
//! in-memory bus; one of them reaches it through [`FaultyBus`], which injects the fault.
//! A frozen etcd, Redis and Postgres server with two hub processes is in `cli/tests/hub_cluster.rs`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use common::{WAIT, connect, next_text, until};
use courier_hub::{Delivery, Frame, Hub, HubConfig, HubError};
use courier_impls::memory::MemoryBus;
use courier_traits::bus::{
    BusCapabilities, BusError, MessageBus, MessageId, Published, SubscribeFrom, Subscription, Topic,
};
use futures::StreamExt;
use tokio::sync::watch;

/// What [`FaultyBus`] does to the calls through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// Passes everything through.
    None,
    /// The next `n` publishes are stored, then answered with a retryable error, as when a
    /// backend commits a write and the answer is lost (timeout, dropped connection).
    Unclear(usize),
    /// The next `n` publishes are stored twice, as a client library that retries a write whose
    /// answer it lost.
    Twice(usize),
    /// Publishes fail without storing anything; messages arriving for this node are lost.
    Down,
    /// Publishes and deliveries wait until the fault changes (a frozen backend).
    Frozen,
}

/// A real in-memory bus seen through a fault injector.
struct FaultyBus {
    inner: Arc<MemoryBus>,
    fault: watch::Sender<Fault>,
}

impl FaultyBus {
    fn new(inner: Arc<MemoryBus>) -> Arc<FaultyBus> {
        Arc::new(FaultyBus {
            inner,
            fault: watch::channel(Fault::None).0,
        })
    }

    fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    fn unavailable(what: &str) -> BusError {
        BusError::Unavailable {
            message: format!("injected fault: {what}"),
            source: None,
        }
    }
}

/// Waits while the bus is frozen; the fault in force afterwards.
async fn unless_frozen(fault: &mut watch::Receiver<Fault>) -> Fault {
    match fault.wait_for(|f| *f != Fault::Frozen).await {
        Ok(f) => *f,
        Err(_) => Fault::None,
    }
}

#[async_trait]
impl MessageBus for FaultyBus {
    async fn publish_with_id(
        &self,
        topic: &Topic,
        id: MessageId,
        payload: Bytes,
    ) -> Result<Published, BusError> {
        let fault = unless_frozen(&mut self.fault.subscribe()).await;
        match fault {
            Fault::None | Fault::Frozen => self.inner.publish_with_id(topic, id, payload).await,
            Fault::Down => Err(FaultyBus::unavailable("bus down")),
            Fault::Unclear(n) => {
                self.set(if n > 1 {
                    Fault::Unclear(n - 1)
                } else {
                    Fault::None
                });
                self.inner.publish_with_id(topic, id, payload).await?;
                Err(FaultyBus::unavailable("answer lost after the write"))
            }
            Fault::Twice(n) => {
                self.set(if n > 1 {
                    Fault::Twice(n - 1)
                } else {
                    Fault::None
                });
                self.inner.publish(topic, payload.clone()).await?;
                self.inner.publish_with_id(topic, id, payload).await
            }
        }
    }

    async fn subscribe(
        &self,
        topic: &Topic,
        from: SubscribeFrom,
    ) -> Result<Subscription, BusError> {
        if unless_frozen(&mut self.fault.subscribe()).await == Fault::Down {
            return Err(FaultyBus::unavailable("bus down"));
        }
        let fault = self.fault.subscribe();
        let inner = self.inner.subscribe(topic, from).await?;
        Ok(inner
            .filter_map(move |item| {
                let mut fault = fault.clone();
                async move { (unless_frozen(&mut fault).await != Fault::Down).then_some(item) }
            })
            .boxed())
    }

    fn capabilities(&self) -> BusCapabilities {
        self.inner.capabilities()
    }

    async fn close(&self) -> Result<(), BusError> {
        self.inner.close().await
    }
}

fn config(node: &str) -> HubConfig {
    HubConfig::default()
        .with_node_id(node)
        .with_heartbeat_interval(Duration::from_millis(100))
}

/// Hub `a` behind a [`FaultyBus`], hub `b` (with `b_config`) directly on the same bus.
async fn two_hubs_with(b_config: HubConfig) -> (Hub, Arc<FaultyBus>, Hub) {
    let shared = Arc::new(MemoryBus::new());
    let faulty = FaultyBus::new(shared.clone());
    let a = Hub::new(Some(faulty.clone()), config("a"))
        .await
        .expect("hub a");
    let b = Hub::new(Some(shared), b_config).await.expect("hub b");
    (a, faulty, b)
}

async fn two_hubs() -> (Hub, Arc<FaultyBus>, Hub) {
    two_hubs_with(config("b")).await
}

#[tokio::test]
async fn a_broadcast_whose_publish_was_unclear_reaches_every_client_once() {
    let (a, faulty, b) = two_hubs().await;
    let mut on_a = connect(&a, "a1").await;
    let mut on_b = [connect(&b, "b1").await, connect(&b, "b2").await];
    until("presence", || {
        a.client_count() == 3 && b.client_count() == 3
    })
    .await;

    faulty.set(Fault::Unclear(1));
    let report = a.broadcast(Frame::text("once")).await.expect("broadcast");
    assert!(!report.published, "the publish was answered with an error");
    // The backlog re-publishes it though the bus already had the first copy. A later
    // broadcast goes out after the re-publish (the backlog keeps order): it marks the end.
    a.broadcast(Frame::text("after")).await.expect("broadcast");
    for client in on_b.iter_mut().chain([&mut on_a]) {
        assert_eq!(next_text(client).await, "once");
        assert_eq!(next_text(client).await, "after", "delivered exactly once");
    }
    assert_eq!(
        courier_hub::Metrics::get(&b.metrics().bus_duplicates),
        1,
        "the bus did hold two copies"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_unicast_the_bus_stored_twice_reaches_its_client_once() {
    let (a, faulty, b) = two_hubs().await;
    let mut target = connect(&b, "b1").await;
    until("presence", || a.client_count() == 1).await;

    faulty.set(Fault::Twice(1));
    let delivery = a.push("b1", Frame::text("once")).await.expect("push");
    assert_eq!(delivery, Delivery::Remote { node: "b".into() });
    a.push("b1", Frame::text("after")).await.expect("push");
    assert_eq!(next_text(&mut target).await, "once");
    assert_eq!(
        next_text(&mut target).await,
        "after",
        "delivered exactly once"
    );
    assert_eq!(courier_hub::Metrics::get(&b.metrics().bus_duplicates), 1);
    a.shutdown().await;
    b.shutdown().await;
}

/// A push is `Bus` (503) or goes through; never `ClientNotFound` for a client that stayed.
fn not_lost(result: &Result<Delivery, HubError>) -> bool {
    !matches!(result, Err(HubError::ClientNotFound(_)))
}

#[tokio::test(start_paused = true)]
async fn while_its_bus_is_down_a_node_keeps_remote_clients_and_answers_bus_unavailable() {
    // b's heartbeats come at 250 ms, within a's limit of 3 x 100 ms, and out of step with a's
    // ticks: after the outage, a ticks before b's next heartbeat reaches it.
    let (a, faulty, b) =
        two_hubs_with(config("b").with_heartbeat_interval(Duration::from_millis(250))).await;
    let mut target = connect(&b, "b1").await;
    until("presence", || a.client_count() == 1).await;

    // Node a hears nothing for 100 heartbeat intervals: its bus is down, node b is fine.
    faulty.set(Fault::Down);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during = a.push("b1", Frame::text("lost")).await;
    assert!(
        matches!(during, Err(HubError::Bus(_))),
        "a temporary failure, not a missing client: {during:?}"
    );
    assert_eq!(a.client_count(), 1, "b1 is still known");
    let unknown = a.push("nobody", Frame::text("x")).await;
    assert!(
        matches!(unknown, Err(HubError::Bus(_))),
        "with the bus down no node can be asked: {unknown:?}"
    );

    // Back: node b's clients are not forgotten before its next heartbeat could arrive.
    faulty.set(Fault::None);
    for _ in 0..10 {
        let result = a.push("b1", Frame::text("back")).await;
        assert!(not_lost(&result), "{result:?}");
        if result.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(next_text(&mut target).await, "back");
    for _ in 0..50 {
        assert_eq!(a.client_count(), 1, "b1 stays known after the bus is back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A node that really goes silent while the bus works is still forgotten.
    b.shutdown().await;
    until("b forgotten", || a.client_count() == 0).await;
    assert!(matches!(
        a.push("b1", Frame::text("x")).await,
        Err(HubError::ClientNotFound(_))
    ));
    a.shutdown().await;
}

/// `GET /health` over a fresh loopback connection; the JSON body.
async fn health(addr: std::net::SocketAddr) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    socket
        .write_all(b"GET /health HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut response = String::new();
    socket
        .read_to_string(&mut response)
        .await
        .expect("response");
    let (_, body) = response.split_once("\r\n\r\n").expect("headers end");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

/// Moves the clock past the second for which the hub reuses a health answer, without waiting
/// it out. The clock is paused only while it is moved: the server's loopback I/O needs real
/// time (a paused clock jumps ahead whenever every task waits, I/O included).
async fn skip_probe_reuse() {
    tokio::time::pause();
    tokio::time::advance(Duration::from_millis(1100)).await;
    tokio::time::resume();
}

#[tokio::test]
async fn health_reports_a_frozen_bus_unavailable_within_its_deadline() {
    let (a, faulty, b) = two_hubs().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = courier_hub::server::HubServer::new(a.clone(), Default::default());
    let serving = tokio::spawn(server.serve(listener, async move {
        let _ = stopped.await;
    }));
    assert_eq!(health(addr).await["bus"], "ok");

    // A frozen backend answers nothing and reports no error: only a deadline tells. (Asked
    // after the 1 s for which the hub reuses the answer given just before the freeze.)
    faulty.set(Fault::Frozen);
    skip_probe_reuse().await;
    let asked = tokio::time::Instant::now();
    let answer = tokio::time::timeout(WAIT, health(addr))
        .await
        .expect("health answers while the bus is frozen");
    assert_eq!(
        (&answer["status"], &answer["bus"]),
        (&"degraded".into(), &"unavailable".into()),
        "{answer}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(
        a.bus_healthy(),
        Some(false),
        "the probe's answer is the node's view"
    );

    faulty.set(Fault::None);
    skip_probe_reuse().await;
    assert_eq!(health(addr).await["bus"], "ok", "healthy again");
    let _ = stop.send(());
    serving.await.expect("server task").expect("served");
    b.shutdown().await;
}
