//! The hub on the in-memory connection fake: T1, T4, T5, T7 of the spec, the dispatcher
//! through a connection, and cluster routing over an in-process bus (two hubs, one bus).
//! The cluster cases against real etcd, Redis and Postgres with two processes are in
//! `cli/tests/hub_cluster.rs`; T4 and T5 over real sockets in `tests/socket.rs`.
//!
//! Every case runs on tokio's paused clock: nothing here waits for real I/O, so time moves
//! only when every task waits, heartbeats, read timeouts and grace periods are exact, and a
//! quiet period costs no wall time.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{WAIT, assert_quiet, connect, next_text, until};
use courier_hub::{Frame, Hub, HubConfig, HubError};
use courier_impls::memory::{MemoryBus, duplex_pair};
use courier_traits::bus::MessageBus;
use courier_traits::transport::Frame as Wire;

#[tokio::test(start_paused = true)]
async fn t1_one_node_broadcast_reaches_every_client_once() {
    let hub = Hub::new(None, HubConfig::default()).await.expect("hub");
    let mut clients = Vec::new();
    for i in 0..20 {
        clients.push(connect(&hub, &format!("c{i}")).await);
    }
    let report = hub.broadcast(Frame::text("news")).await.expect("broadcast");
    assert_eq!(
        (report.delivered, report.dropped, report.published),
        (20, 0, false)
    );
    for client in &mut clients {
        assert_eq!(next_text(client).await, "news");
    }
    for client in &mut clients {
        assert_quiet(client, Duration::from_millis(100)).await;
    }
    assert_eq!(hub.client_count(), 20);
    hub.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn unicast_reaches_only_the_target_and_unknown_ids_are_not_found() {
    let hub = Hub::new(None, HubConfig::default()).await.expect("hub");
    let mut a = connect(&hub, "a").await;
    let mut b = connect(&hub, "b").await;
    let (frame, ack) = Frame::text("for a").with_ack();
    hub.push("a", frame).await.expect("push");
    assert!(matches!(ack.await, Ok(Ok(()))), "ack resolves once written");
    assert_eq!(next_text(&mut a).await, "for a");
    assert_quiet(&mut b, Duration::from_millis(100)).await;
    assert!(matches!(
        hub.push("nobody", Frame::text("x")).await,
        Err(HubError::ClientNotFound(id)) if id == "nobody"
    ));
    hub.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn t4_a_silent_client_is_disconnected_and_removed() {
    let read_timeout = Duration::from_millis(300);
    let ping_interval = Duration::from_millis(100);
    let config = HubConfig::default()
        .with_read_timeout(read_timeout)
        .with_ping_interval(ping_interval);
    let hub = Hub::new(None, config).await.expect("hub");
    let mut silent = connect(&hub, "silent").await;
    let mut lively = connect(&hub, "lively").await;
    let started = tokio::time::Instant::now();
    // `lively` answers every ping with a pong; `silent` never sends anything. The clock is
    // paused: it moves only when every task waits, so the timings below are exact.
    let mut pings_to_silent = 0;
    let mut silent_open = true;
    let mut silent_ended = None;
    let serve_until = async {
        loop {
            tokio::select! {
                frame = lively.receiver.recv() => if let Ok(Some(Wire::Ping(p))) = frame {
                    lively.sender.send(Wire::Pong(p)).await.expect("pong");
                },
                frame = silent.receiver.recv(), if silent_open => match frame {
                    Ok(Some(Wire::Ping(_))) => pings_to_silent += 1,
                    Ok(None) | Err(_) => {
                        silent_open = false;
                        silent_ended = Some(started.elapsed());
                    }
                    Ok(Some(other)) => panic!("unexpected {other:?}"),
                },
                // Past the silent client's end, lively keeps answering for two more timeouts.
                () = tokio::time::sleep_until(started + read_timeout * 3) => return,
            }
        }
    };
    tokio::time::timeout(WAIT, serve_until)
        .await
        .expect("bounded");
    let ended = silent_ended.expect("the silent client's connection ends");
    assert!(
        ended >= read_timeout && ended < read_timeout + ping_interval,
        "removed one read timeout after its last frame, not at {ended:?}"
    );
    assert!(pings_to_silent >= 1, "the hub pings");
    until("silent client removed", || !hub.is_local("silent")).await;
    assert!(hub.is_local("lively"), "a client answering pings stays");
    assert_eq!(
        courier_hub::Metrics::get(&hub.metrics().heartbeat_timeouts),
        1
    );
    hub.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn t5_full_buffer_returns_send_buffer_full_and_a_persistently_slow_client_is_evicted() {
    let grace = Duration::from_millis(200);
    let config = HubConfig::default()
        .with_message_buffer_cap(4)
        .with_slow_client_grace(grace);
    let hub = Hub::new(None, config).await.expect("hub");
    // The fake connection holds 1 frame; the hub's queue 4; the client never reads.
    let (slow_client, server) = duplex_pair(1);
    hub.register("slow", server).expect("registers");
    let mut fast = connect(&hub, "fast").await;
    let mut full: u64 = 0;
    // Two rounds. Pushes do not yield, so the first round fills the queue (4) before the
    // writer runs; between the rounds the writer moves one frame into the connection and
    // blocks on the next: the second round finds 2 free places. (The clock is paused: the
    // sleep lets every task run until it waits, and no timer of the hub is due in 50 ms.)
    for i in 0..40 {
        if i == 20 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        match hub.push("slow", Frame::text(format!("m{i}"))).await {
            Ok(_) => {}
            Err(HubError::SendBufferFull(id)) => {
                assert_eq!(id, "slow");
                full += 1;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(full, 40 - 4 - 2, "pushes past the queue are refused");
    // One slow client never delays others.
    hub.push("fast", Frame::text("still fast"))
        .await
        .expect("push");
    assert_eq!(next_text(&mut fast).await, "still fast");
    // The queue has been full since the second round (it took frames until then): just
    // before the grace period ends a push is refused and the client stays...
    tokio::time::advance(grace - Duration::from_millis(1)).await;
    let early = hub.push("slow", Frame::text("early")).await;
    assert!(
        matches!(early, Err(HubError::SendBufferFull(_))),
        "{early:?}"
    );
    tokio::task::yield_now().await;
    assert!(hub.is_local("slow"), "not evicted within the grace period");
    assert_eq!(courier_hub::Metrics::get(&hub.metrics().evictions), 0);
    // ...and once it has ended, the next push evicts it.
    tokio::time::advance(Duration::from_millis(1)).await;
    let late = hub.push("slow", Frame::text("late")).await;
    assert!(matches!(late, Err(HubError::SendBufferFull(_))), "{late:?}");
    until("slow client evicted", || !hub.is_local("slow")).await;
    assert_eq!(courier_hub::Metrics::get(&hub.metrics().evictions), 1);
    assert_eq!(
        courier_hub::Metrics::get(&hub.metrics().drops),
        full + 2,
        "every refused push counts as a drop"
    );
    drop(slow_client);
    hub.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn t7_duplicate_registration_closes_the_old_connection() {
    let hub = Hub::new(None, HubConfig::default()).await.expect("hub");
    let mut old = connect(&hub, "dup").await;
    let mut new = connect(&hub, "dup").await;
    // The old connection ends (the fake carries no close code; the socket adapter sends 4000).
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            match old.receiver.recv().await {
                Ok(None) | Err(_) => return,
                Ok(Some(_)) => {}
            }
        }
    });
    ended.await.expect("old connection closed");
    hub.push("dup", Frame::text("to the new one"))
        .await
        .expect("push");
    assert_eq!(next_text(&mut new).await, "to the new one");
    assert_eq!(hub.local_count(), 1);
    hub.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn ping_message_gets_pong_and_unknown_type_an_error_on_the_same_connection() {
    let hub = Hub::new(None, HubConfig::default()).await.expect("hub");
    let mut c = connect(&hub, "c").await;
    c.sender
        .send(Wire::Text(
            r#"{"message_id":5,"message_type":"ping","data":null,"ts":0}"#.into(),
        ))
        .await
        .expect("send");
    let pong: serde_json::Value = serde_json::from_str(&next_text(&mut c).await).expect("json");
    assert_eq!(
        (pong["message_id"].as_i64(), pong["message_type"].as_str()),
        (Some(5), Some("pong"))
    );
    c.sender
        .send(Wire::Text(
            r#"{"message_id":6,"message_type":"nope"}"#.into(),
        ))
        .await
        .expect("send");
    let error: serde_json::Value = serde_json::from_str(&next_text(&mut c).await).expect("json");
    assert_eq!(error["data"]["code"], "unknown_message_type");
    assert!(hub.is_local("c"), "connection kept");
    hub.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_message_over_the_limit_ends_the_connection_on_a_transport_without_its_own_limit() {
    let config = HubConfig::default().with_max_message_bytes(16);
    let hub = Hub::new(None, config).await.expect("hub");
    let mut client = connect(&hub, "big").await;
    client
        .sender
        .send(Wire::Text("x".repeat(17)))
        .await
        .expect("send");
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            match client.receiver.recv().await {
                Ok(Some(Wire::Ping(_))) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the hub ends the connection");
    assert!(matches!(ended, Ok(None) | Err(_)), "{ended:?}");
    until("removed", || !hub.is_local("big")).await;
    hub.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_closes_clients_and_refuses_calls() {
    let hub = Hub::new(None, HubConfig::default()).await.expect("hub");
    let mut c = connect(&hub, "c").await;
    hub.shutdown().await;
    assert!(matches!(
        tokio::time::timeout(WAIT, c.receiver.recv()).await,
        Ok(Ok(None))
    ));
    assert!(matches!(
        hub.broadcast(Frame::text("x")).await,
        Err(HubError::Closed)
    ));
}

fn cluster_config(node: &str) -> HubConfig {
    HubConfig::default()
        .with_node_id(node)
        .with_heartbeat_interval(Duration::from_millis(100))
}

#[tokio::test(start_paused = true)]
async fn cluster_over_one_bus_broadcasts_once_and_routes_unicast() {
    let bus: Arc<dyn MessageBus> = Arc::new(MemoryBus::new());
    let a = Hub::new(Some(bus.clone()), cluster_config("a"))
        .await
        .expect("hub a");
    let b = Hub::new(Some(bus.clone()), cluster_config("b"))
        .await
        .expect("hub b");
    let mut a1 = connect(&a, "a1").await;
    let mut b1 = connect(&b, "b1").await;
    let mut b2 = connect(&b, "b2").await;
    until("presence", || {
        a.client_count() == 3 && b.client_count() == 3
    })
    .await;

    // T2: broadcast from a reaches every client on both nodes once.
    let report = a.broadcast(Frame::text("all")).await.expect("broadcast");
    assert!(report.published);
    for c in [&mut a1, &mut b1, &mut b2] {
        assert_eq!(next_text(c).await, "all");
    }
    for c in [&mut a1, &mut b1, &mut b2] {
        assert_quiet(c, Duration::from_millis(150)).await;
    }

    // T3: unicast from a to a client on b reaches only it.
    let delivery = a.push("b2", Frame::text("just b2")).await.expect("push");
    assert_eq!(delivery, courier_hub::Delivery::Remote { node: "b".into() });
    assert_eq!(next_text(&mut b2).await, "just b2");
    assert_quiet(&mut b1, Duration::from_millis(150)).await;
    assert_quiet(&mut a1, Duration::from_millis(10)).await;

    // A client leaving b is soon unknown to a.
    drop(b1);
    until("leave", || a.client_count() == 2).await;
    assert!(matches!(
        a.push("b1", Frame::text("x")).await,
        Err(HubError::ClientNotFound(_))
    ));

    // T7 across nodes: b2 registering again on a closes it on b.
    let mut b2_on_a = connect(&a, "b2").await;
    until("old b2 removed on b", || !b.is_local("b2")).await;
    a.push("b2", Frame::text("moved")).await.expect("push");
    assert_eq!(next_text(&mut b2_on_a).await, "moved");

    // A node that leaves is forgotten with its clients.
    b.shutdown().await;
    until("b forgotten", || a.client_count() == 2).await;
    a.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_late_joining_node_learns_existing_clients_from_snapshots() {
    let bus: Arc<dyn MessageBus> = Arc::new(MemoryBus::new());
    let a = Hub::new(Some(bus.clone()), cluster_config("a"))
        .await
        .expect("hub a");
    let _c = connect(&a, "early").await;
    let b = Hub::new(Some(bus.clone()), cluster_config("b"))
        .await
        .expect("hub b");
    until("snapshot", || b.client_count() == 1).await;
    assert!(matches!(
        b.push("early", Frame::text("hi")).await,
        Ok(courier_hub::Delivery::Remote { .. })
    ));
    a.shutdown().await;
    b.shutdown().await;
}

/// A sender that records, when the first frame (the greeting) is written, whether the hub had
/// already registered the client.
struct GreetingWitness {
    hub: Hub,
    id: String,
    registered_at_greeting: Arc<std::sync::Mutex<Option<bool>>>,
    inner: Box<dyn courier_traits::transport::FrameSender>,
}

#[async_trait::async_trait]
impl courier_traits::transport::FrameSender for GreetingWitness {
    async fn send(&mut self, frame: Wire) -> Result<(), courier_traits::transport::TransportError> {
        {
            let mut seen = self.registered_at_greeting.lock().expect("witness lock");
            if seen.is_none() {
                *seen = Some(self.hub.is_local(&self.id));
            }
        }
        self.inner.send(frame).await
    }

    async fn close(
        &mut self,
        code: u16,
        reason: &str,
    ) -> Result<(), courier_traits::transport::TransportError> {
        self.inner.close(code, reason).await
    }
}

/// A client that has its greeting is registered: a broadcast made as soon as the greeting
/// arrives reaches it. The hub checker once lost such a broadcast (an accepted broadcast made
/// right after the last client's welcome never reached that client) because the writer task
/// could send the greeting before the registry held the client. Registrations come from a
/// thread outside the runtime so the writer starts on a worker while registration goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_is_registered_before_its_greeting_is_written() {
    let hub = Hub::new(None, HubConfig::default()).await.expect("hub");
    let runtime = tokio::runtime::Handle::current();
    let mut witnesses = Vec::new();
    let mut clients = Vec::new();
    for i in 0..500 {
        let id = format!("g{i}");
        let (server, client) = duplex_pair(16);
        let witness = Arc::new(std::sync::Mutex::new(None));
        let connection = courier_traits::transport::DuplexConnection {
            sender: Box::new(GreetingWitness {
                hub: hub.clone(),
                id: id.clone(),
                registered_at_greeting: witness.clone(),
                inner: server.sender,
            }),
            receiver: server.receiver,
        };
        let (hub2, runtime) = (hub.clone(), runtime.clone());
        std::thread::spawn(move || {
            let _entered = runtime.enter();
            hub2.register_with_greeting(&id, connection, Some(Frame::text("welcome")))
        })
        .join()
        .expect("registering thread")
        .expect("registered");
        witnesses.push(witness);
        clients.push(client);
    }
    until("every greeting written", || {
        witnesses.iter().all(|w| w.lock().expect("lock").is_some())
    })
    .await;
    let early = witnesses
        .iter()
        .filter(|w| *w.lock().expect("lock") == Some(false))
        .count();
    assert_eq!(
        early, 0,
        "greetings written before their client was registered"
    );
    hub.shutdown().await;
}
