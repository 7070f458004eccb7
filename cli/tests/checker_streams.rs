//! The randomized checker against `courier streams` on every storage: concurrent clients on two
//! nodes (one for memory) run random creates, idempotent and plain appends, reads, closes,
//! deletes and forks while nodes are SIGKILLed and restarted, the storage server restarted or
//! frozen, and connections cut; the history is then checked (testkit `checker::streams`).
//!
//! `COURIER_CHECKER_SECS` sets the length (default 20 s per storage), `COURIER_CHECKER_SEED`
//! replays a run's random choices.

#[path = "checker/cluster.rs"]
mod cluster;
#[path = "checker/http_outcome.rs"]
mod http_outcome;
#[path = "checker/service.rs"]
mod service;
#[path = "checker/streams_http.rs"]
mod streams_http;

use std::sync::Arc;
use std::time::Duration;

use cluster::{Cluster, ServerControl, server_control};
use courier_testkit::checker::streams::Workload;
use courier_testkit::checker::{Seed, run_duration};
use courier_testkit::fixtures::{Postgres, Redis, unique_prefix};
use service::Service;
use streams_http::HttpStreams;

const DEFAULT_SECS: u64 = 20;

async fn check(name: &str, storage: &str, nodes: usize, server: Option<Arc<dyn ServerControl>>) {
    let seed = Seed::from_env(&format!("streams on {name}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut services = Vec::new();
    for i in 0..nodes {
        let log = dir.path().join(format!("node{i}.log"));
        services.push(
            Service::start(
                &["streams", "--storage", storage, "--long-poll-timeout", "1s"],
                &[("COURIER_LOG", "warn")],
                &log,
            )
            .await,
        );
    }
    let killable = if storage == "memory" { 0 } else { nodes };
    let cluster = Cluster::new(services, server, killable).await;
    let api = Arc::new(HttpStreams::new(&cluster.addrs(), &unique_prefix()));
    let workload = Workload {
        duration: run_duration(Duration::from_secs(DEFAULT_SECS)),
        ..Workload::default()
    };
    let report = workload
        .run(&format!("streams on {name}"), api, &cluster, seed)
        .await;
    cluster.shutdown().await;
    report.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_checker_memory() {
    check("memory", "memory", 1, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_checker_sqlite_two_processes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = format!("sqlite:{}", dir.path().join("streams.db").display());
    check("sqlite", &storage, 2, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_checker_redis_two_nodes() {
    let redis = Redis::start().await.expect("redis fixture");
    let url = redis.url();
    let mode = redis.mode();
    check("redis", &url, 2, server_control(redis, mode)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_checker_postgres_two_nodes() {
    let postgres = Postgres::start().await.expect("postgres fixture");
    let url = postgres.url();
    let mode = postgres.mode();
    check("postgres", &url, 2, server_control(postgres, mode)).await;
}
