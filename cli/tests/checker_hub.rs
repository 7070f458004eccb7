//! The randomized checker against two `courier hub` processes over a bus (etcd, Redis,
//! Postgres): broadcasts and unicasts with unique payloads through the HTTP API of both nodes,
//! SDK clients on both, while node 0 is SIGKILLed and restarted, the bus server restarted or
//! frozen (SIGSTOP), and proxied connections cut; then testkit `checker::hub` judges delivery:
//! exactly once for clients connected throughout, never to the wrong client, never twice.
//!
//! Node 1 is never killed and two clients connect to it directly (not through a proxy), so some
//! clients stay connected throughout and are judged for exactly-once delivery.
//! `COURIER_CHECKER_SECS` sets the length (default 20 s per bus), `COURIER_CHECKER_SEED`
//! replays a run's random choices.

#[path = "checker/cluster.rs"]
mod cluster;
#[path = "checker/http_outcome.rs"]
mod http_outcome;
#[path = "checker/hub_http.rs"]
mod hub_http;
#[path = "checker/service.rs"]
mod service;

use std::sync::Arc;
use std::time::Duration;

use cluster::{Cluster, ServerControl, server_control};
use courier_testkit::checker::hub::Workload;
use courier_testkit::checker::{History, Schedule, Seed, run_duration};
use courier_testkit::fixtures::{Etcd, Postgres, Redis, unique_prefix};
use hub_http::{API_KEY, Clients, HttpHub};
use service::Service;

const DEFAULT_SECS: u64 = 20;

async fn check(name: &str, bus: String, server: Option<Arc<dyn ServerControl>>) {
    let seed = Seed::from_env(&format!("hub on {name}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("hub.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  read_timeout: 1m\ncluster:\n  enabled: true\n  heartbeat_interval: 500ms\n{bus}"
        ),
    )
    .expect("config");
    let config = config.display().to_string();
    let mut nodes = Vec::new();
    for i in 0..2 {
        let node_id = format!("node-{i}");
        let log = dir.path().join(format!("{node_id}.log"));
        let args = [
            "hub",
            "--config",
            &config,
            "--node-id",
            &node_id,
            "--api-key",
            API_KEY,
        ];
        nodes.push(Service::start(&args, &[("COURIER_LOG", "warn")], &log).await);
    }
    let direct: Vec<std::net::SocketAddr> = nodes.iter().map(Service::addr).collect();
    let cluster = Cluster::new(nodes, server, 1).await;
    let proxied = cluster.addrs();
    let history = Arc::new(History::new());
    let mut clients = Clients::new();
    // Judged for exactly-once: never cut, never on a killed node.
    clients.connect("stable-1", direct[1], &history).await;
    clients.connect("stable-2", direct[1], &history).await;
    // Lose connections (proxy cuts, kills of node 0): judged for at-most-once and routing.
    clients.connect("cut-1", proxied[1], &history).await;
    clients.connect("killed-1", direct[0], &history).await;
    clients.connect("killed-2", proxied[0], &history).await;
    let api = Arc::new(HttpHub::new(&proxied));
    let duration = run_duration(Duration::from_secs(DEFAULT_SECS));
    let defaults = Workload::default();
    // The pace already bounds the calls; the cap only has to stay out of the way, or a long
    // release run would stop calling long before its faults stop.
    let max_ops_per_sender =
        usize::try_from(duration.as_millis() / defaults.pace.as_millis().max(1))
            .unwrap_or(usize::MAX)
            + 1;
    let workload = Workload {
        duration,
        max_ops_per_sender,
        schedule: Schedule {
            // Longer than the hub's 5 s wait for a publish, so some publishes end unclear, and
            // more often than the other faults: unclear publishes are where duplicates come from.
            freeze: (Duration::from_secs(3), Duration::from_secs(8)),
            weights: [2, 2, 4, 2],
            ..Schedule::default()
        },
        ..defaults
    };
    let report = workload
        .run(
            &format!("hub on {name}"),
            api,
            &clients,
            &cluster,
            history,
            seed,
        )
        .await;
    clients.close();
    cluster.shutdown().await;
    report.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_checker_etcd() {
    let etcd = Etcd::start().await.expect("etcd fixture");
    let bus = format!(
        "  bus: etcd\n  etcd:\n    endpoints: {:?}\n    key_prefix: \"/hub-{}\"\n    dial_timeout: 2s\n",
        etcd.endpoints(),
        unique_prefix()
    );
    let mode = etcd.mode();
    check("etcd", bus, server_control(etcd, mode)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_checker_redis() {
    let redis = Redis::start().await.expect("redis fixture");
    let bus = format!(
        "  bus: redis\n  redis:\n    url: {:?}\n    key_prefix: \"hub-{}\"\n",
        redis.url(),
        unique_prefix()
    );
    let mode = redis.mode();
    check("redis", bus, server_control(redis, mode)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_checker_postgres() {
    let postgres = Postgres::start().await.expect("postgres fixture");
    // Each fixture is a database of its own: no prefix needed.
    let bus = format!(
        "  bus: postgres\n  postgres:\n    url: {:?}\n",
        postgres.url()
    );
    let mode = postgres.mode();
    check("postgres", bus, server_control(postgres, mode)).await;
}
