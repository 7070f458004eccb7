//! The hub's test matrix T2, T3, T6 and T7 across two `courier hub` processes, over a real
//! etcd and again over Redis and Postgres (testkit fixtures: containers when Docker answers, native
//! servers otherwise), then a bus server frozen for 8 s with a broadcast and a push in flight
//! (health unavailable, the push never "not found", every client gets the broadcast exactly
//! once). T1, T4 and T5 run on the in-memory fake in services/hub/tests.

#[path = "hub/backend.rs"]
mod backend;
#[path = "hub/node.rs"]
mod node;

use std::time::Duration;

use backend::Backend;
use courier::traits::transport::Method;
use courier_testkit::fixtures::{Etcd, Postgres, Redis};
use node::{Node, TestClient, until};

const QUIET: Duration = Duration::from_millis(500);

/// The hubs' config over `backend`'s bus.
fn config(backend: &Backend) -> String {
    format!(
        "server:\n  read_timeout: 1m\ncluster:\n  enabled: true\n  heartbeat_interval: 500ms\n{}",
        backend.bus_section()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hub_processes_over_etcd() {
    let etcd = Etcd::start().await.expect("etcd fixture");
    matrix(Backend::Etcd(etcd)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hub_processes_over_redis() {
    let redis = Redis::start().await.expect("redis fixture");
    matrix(Backend::Redis(redis)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hub_processes_over_postgres() {
    let postgres = Postgres::start().await.expect("postgres fixture");
    matrix(Backend::Postgres(postgres)).await;
}

async fn matrix(mut backend: Backend) {
    let started = std::time::Instant::now();
    // Progress on stderr (shown on failure), so a slow phase is visible in CI logs.
    let step = |what: &str| eprintln!("[{:>6.2}s] {what}", started.elapsed().as_secs_f64());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("hub.yaml");
    std::fs::write(&config, self::config(&backend)).expect("config");
    step("start two hub processes");
    let a = Node::start(&config, &["--node-id", "node-a"]).await;
    let b = Node::start(&config, &["--node-id", "node-b"]).await;
    let mut a1 = TestClient::connect(&a, "a1").await;
    let mut a2 = TestClient::connect(&a, "a2").await;
    let mut b1 = TestClient::connect(&b, "b1").await;
    let mut b2 = TestClient::connect(&b, "b2").await;
    until("both nodes see 4 clients", || async {
        a.cluster_count().await == 4 && b.cluster_count().await == 4
    })
    .await;

    step("T2 broadcast");
    // T2: a broadcast through node A reaches every client on both nodes exactly once.
    let report = a.broadcast("t2").await;
    assert_eq!(
        (report["delivered"].as_u64(), report["published"].as_bool()),
        (Some(2), Some(true))
    );
    for c in [&mut a1, &mut a2, &mut b1, &mut b2] {
        assert_eq!(c.next_text().await, "t2");
    }
    for c in [&mut a1, &mut a2, &mut b1, &mut b2] {
        c.assert_quiet(QUIET).await;
    }

    step("T3 push across nodes");
    // T3: a push through node A to a client on node B reaches only that client.
    let (status, body) = a.api(Method::Post, "/api/v1/clients/b2/push", "t3").await;
    assert_eq!(
        (status, body["delivered"].as_str(), body["node"].as_str()),
        (200, Some("remote"), Some("node-b"))
    );
    assert_eq!(b2.next_text().await, "t3");
    for c in [&mut a1, &mut a2, &mut b1] {
        c.assert_quiet(QUIET).await;
    }
    let (status, body) = a
        .api(Method::Post, "/api/v1/clients/nobody/push", "x")
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("client_not_found"))
    );

    // The SDK's request/response over the real socket.
    let pong = a1
        .client
        .request("ping", serde_json::Value::Null)
        .await
        .expect("pong");
    assert_eq!(pong.message_type, "pong");

    step("T7 replace across nodes");
    // T7 across nodes: a1 registering again on node B closes the connection on node A.
    let mut a1_old = a1;
    let mut a1_new = TestClient::connect_with(&b, "a1", false).await;
    match a1_old.next_event().await {
        courier::hub::sdk::Event::Disconnected { reason } => {
            assert!(
                reason.contains("closed") || reason.contains("replaced"),
                "{reason}"
            )
        }
        other => panic!("old a1: expected Disconnected, got {other:?}"),
    }
    a1_old.client.close();
    let (status, body) = a.api(Method::Post, "/api/v1/clients/a1/push", "t7").await;
    assert_eq!(
        (status, body["delivered"].as_str()),
        (200, Some("remote")),
        "{body}"
    );
    assert_eq!(a1_new.next_text().await, "t7");

    step("T6 stop the bus server");
    // T6: bus outage. Local delivery goes on; what was broadcast meanwhile reaches the other
    // node once the bus is back, and cross-node delivery resumes.
    backend.stop().await;
    let report = a.broadcast("during outage").await;
    assert_eq!(report["published"].as_bool(), Some(false), "{report}");
    assert_eq!(a2.next_text().await, "during outage");
    until("A reports the bus down", || async {
        a.health().await["bus"] == "unavailable"
    })
    .await;
    step("T6 start the bus server again");
    backend.start_again().await;
    for c in [&mut b1, &mut b2, &mut a1_new] {
        assert_eq!(c.next_text().await, "during outage");
    }
    until("A's bus healthy again", || async {
        a.health().await["bus"] == "ok"
    })
    .await;
    step("T6 bus healthy; broadcast after the outage");
    b.broadcast("after").await;
    for c in [&mut a2, &mut b1, &mut b2, &mut a1_new] {
        assert_eq!(c.next_text().await, "after");
    }
    a2.assert_quiet(QUIET).await;
    until("directory repaired after the outage", || async {
        a.cluster_count().await == 4 && b.cluster_count().await == 4
    })
    .await;
    let (status, _) = b.api(Method::Post, "/api/v1/clients/a2/push", "back").await;
    assert_eq!(status, 200);
    assert_eq!(a2.next_text().await, "back");

    step("frozen bus server: a broadcast and a push in flight");
    // The bus server hangs for 8 s (SIGSTOP, or docker pause): connections stay open, nothing
    // is answered. A broadcast in flight may be stored although its publish times out; node A
    // then re-publishes it from its backlog, and receivers must drop the second copy.
    backend.freeze().await;
    let frozen_at = tokio::time::Instant::now();
    let broadcast = a.broadcast("during freeze");
    let health_and_push = async {
        // Past three of B's heartbeats (1.5 s): A hears nothing, but B's clients are still there.
        tokio::time::sleep_until(frozen_at + Duration::from_secs(3)).await;
        let health = a.health().await;
        let push = a
            .api(
                Method::Post,
                "/api/v1/clients/b2/push",
                "pushed during freeze",
            )
            .await;
        (health, push)
    };
    let thaw = async {
        tokio::time::sleep_until(frozen_at + Duration::from_secs(8)).await;
        backend.thaw().await;
    };
    let (report, (health, (push_status, push_body)), ()) =
        tokio::join!(broadcast, health_and_push, thaw);
    step(&format!(
        "thawed; broadcast answered {report}, push {push_status}"
    ));
    assert_eq!(
        health["bus"], "unavailable",
        "health 3 s into the freeze: {health}"
    );
    assert!(
        matches!(push_status, 200 | 503),
        "a client that stayed connected is never 'not found': {push_status} {push_body}"
    );
    assert_eq!(
        a2.next_text().await,
        "during freeze",
        "local delivery goes on"
    );

    step("every client gets the broadcast exactly once");
    a.broadcast("after freeze").await;
    let mut pushes = 0;
    for (name, client, copies) in [
        ("a2", &mut a2, 0),
        ("b1", &mut b1, 1),
        ("b2", &mut b2, 1),
        ("a1 on B", &mut a1_new, 1),
    ] {
        let texts = texts_until(client, "after freeze").await;
        let count = |text: &str| texts.iter().filter(|t| *t == text).count();
        assert_eq!(count("during freeze"), copies, "{name}: {texts:?}");
        let pushed = count("pushed during freeze");
        assert!(name == "b2" || pushed == 0, "{name}: {texts:?}");
        pushes += pushed;
        assert_eq!(texts.len(), copies + pushed + 1, "{name}: {texts:?}");
    }
    // The push travels on its own topic: it may come after the marker, once at most, and only
    // to b2 (a 503 may still have been stored by the bus).
    if pushes == 0
        && let Ok(text) = tokio::time::timeout(QUIET, b2.next_text()).await
    {
        assert_eq!(text, "pushed during freeze");
        pushes += 1;
    }
    assert!(pushes <= 1, "the push reached b2 {pushes} times");
    if push_status == 200 {
        assert_eq!(pushes, 1, "an accepted push is delivered");
    }
    for client in [&mut a2, &mut b1, &mut b2, &mut a1_new] {
        client.assert_quiet(QUIET).await;
    }

    step("stop the hubs");
    a.stop().await;
    b.stop().await;
}

/// The texts `client` receives up to and including `marker` (at most 100).
async fn texts_until(client: &mut TestClient, marker: &str) -> Vec<String> {
    let mut texts = Vec::new();
    while texts.len() < 100 {
        let text = client.next_text().await;
        let done = text == marker;
        texts.push(text);
        if done {
            return texts;
        }
    }
    panic!("{marker:?} not among the first 100 messages: {texts:?}");
}
