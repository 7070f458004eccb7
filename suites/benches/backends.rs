//! Backend benchmarks, each beside the raw server's own figure from the same run.
//!
//! Run: `COURIER_TESTKIT_MODE=native cargo bench -p courier-suites --bench backends`
//! (native servers: no container networking in the path, same as the raw figures).
//! Method and recorded results: `benches/README.md`.
//!
//! * `append/*`: appends per second to one stream, 1 and 64 concurrent writers, 100 B and 64 KiB.
//! * `append_raw/sqlite`: the same INSERT + commit through rusqlite with the same pragmas.
//! * `read/*`: records per second reading a 1000-record stream from the start.
//! * `publish/*`: publishes per second (one publisher) for each bus; `publish/*/32topics`: 32
//!   publishers at once, a topic each; `publish_raw/etcd` is a plain etcd put loop. Redis's raw figure comes from `redis-benchmark` (printed).
//! * latency: publish -> receive p50/p99 for each bus (printed, 2000 sequential samples).
//! * Postgres's raw figure comes from `pgbench` running a comparable INSERT (printed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use courier::bus::{MessageBus, SubscribeFrom, Topic};
use courier::impls::etcd::proto::etcdserverpb::PutRequest;
use courier::impls::etcd::{EtcdBus, EtcdBusConfig, EtcdClient};
use courier::impls::memory::{MemoryBus, MemoryStreamStorage};
use courier::impls::postgres::{PgBus, PgBusConfig, PgStorageConfig, PgStreamStorage};
use courier::impls::redis::{RedisBus, RedisBusConfig, RedisStorageConfig, RedisStreamStorage};
use courier::impls::sqlite::{SqliteStorageConfig, SqliteStreamStorage};
use courier::storage::{AppendRequest, ReadLimits, StreamConfig, StreamName, StreamStorage};
use courier_testkit::fixtures::{Etcd, Postgres, Redis, unique_prefix};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use tokio::runtime::Runtime;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn quick(c: &mut Criterion) -> criterion::BenchmarkGroup<'_, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group("courier");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group
}

/// Runs `iters` appends of `size` bytes split over `writers` tasks; returns the elapsed time.
async fn append_burst(
    store: Arc<dyn StreamStorage>,
    name: StreamName,
    writers: u64,
    iters: u64,
    size: usize,
) -> Duration {
    let record = Bytes::from(vec![b'x'; size]);
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (store, name, record) = (store.clone(), name.clone(), record.clone());
            let count = iters / writers + u64::from(w < iters % writers);
            tokio::spawn(async move {
                for _ in 0..count {
                    store
                        .append(&name, AppendRequest::record(record.clone()))
                        .await
                        .expect("append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer");
    }
    started.elapsed()
}

async fn new_stream(store: &dyn StreamStorage) -> StreamName {
    let name = StreamName::new(&unique_prefix()).expect("valid");
    store
        .create(&name, StreamConfig::default(), vec![])
        .await
        .expect("create");
    name
}

fn storage_benches(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = rt
        .block_on(SqliteStreamStorage::connect(
            dir.path().join("bench.db"),
            SqliteStorageConfig::default(),
        ))
        .expect("sqlite");
    let postgres = rt.block_on(Postgres::start()).expect("postgres");
    let pg = rt
        .block_on(PgStreamStorage::connect(
            &postgres.url(),
            PgStorageConfig::default(),
        ))
        .expect("postgres storage");
    let redis = rt.block_on(Redis::start()).expect("redis");
    let redis_store = rt
        .block_on(RedisStreamStorage::connect(
            &redis.url(),
            RedisStorageConfig::default(),
        ))
        .expect("redis storage");
    let stores: Vec<(&str, Arc<dyn StreamStorage>)> = vec![
        ("memory", Arc::new(MemoryStreamStorage::new())),
        ("sqlite", Arc::new(sqlite)),
        ("postgres", Arc::new(pg)),
        ("redis", Arc::new(redis_store)),
    ];
    let mut group = quick(c);
    for (backend, store) in &stores {
        for writers in [1u64, 64] {
            for size in [100usize, 64 << 10] {
                let id =
                    BenchmarkId::new(format!("append/{backend}/{writers}w"), format!("{size}B"));
                group.throughput(Throughput::Elements(1));
                group.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        rt.block_on(async {
                            let name = new_stream(&**store).await;
                            append_burst(store.clone(), name, writers, iters, size).await
                        })
                    })
                });
            }
        }
        let name = rt.block_on(async {
            let name = new_stream(&**store).await;
            append_burst(store.clone(), name.clone(), 1, 1000, 100).await;
            name
        });
        group.throughput(Throughput::Elements(1000));
        group.bench_function(format!("read/{backend}/1000x100B"), |b| {
            b.to_async(&rt).iter(|| async {
                let batch = store
                    .read(&name, None, ReadLimits::default())
                    .await
                    .expect("read");
                assert_eq!(batch.records.len(), 1000);
            })
        });
    }

    // The raw figure for SQLite: the same INSERT + commit, same pragmas, no Courier.
    let raw = rusqlite::Connection::open(dir.path().join("raw.db")).expect("raw sqlite");
    raw.pragma_update(None, "journal_mode", "WAL").expect("wal");
    raw.pragma_update(None, "synchronous", "FULL")
        .expect("synchronous");
    raw.execute_batch(
        "CREATE TABLE t (stream TEXT, idx INTEGER, data BLOB, PRIMARY KEY (stream, idx)) WITHOUT ROWID",
    )
    .expect("table");
    group.throughput(Throughput::Elements(1));
    let mut next = 0i64;
    group.bench_function(BenchmarkId::new("append_raw/sqlite/1w", "100B"), |b| {
        b.iter(|| {
            next += 1;
            raw.execute_batch("BEGIN IMMEDIATE").expect("begin");
            raw.prepare_cached("INSERT INTO t VALUES ('s', ?1, ?2)")
                .and_then(|mut insert| insert.execute((next, vec![b'x'; 100])))
                .expect("insert");
            raw.execute_batch("COMMIT").expect("commit");
        })
    });
    group.finish();
    match postgres
        .url()
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next()?.parse::<u16>().ok())
    {
        Some(port) => {
            for clients in [1, 64] {
                match pgbench_inserts(port, clients) {
                    Some(tps) => println!("pgbench INSERT 100 B, {clients} clients: {tps:.0} tps"),
                    None => println!("pgbench: not available or failed"),
                }
            }
        }
        None => println!("pgbench: server address unknown"),
    }
}

/// `pgbench` running single-row INSERTs of 100 B against the same server: transactions/s.
fn pgbench_inserts(port: u16, clients: u32) -> Option<f64> {
    let dir = tempfile::tempdir().ok()?;
    let script = dir.path().join("insert.sql");
    std::fs::write(
        &script,
        "INSERT INTO courier_raw (data) VALUES (decode(repeat('78', 100), 'hex'));\n",
    )
    .ok()?;
    let psql = |sql: &str| {
        std::process::Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-qc",
                sql,
            ])
            .status()
            .ok()
            .filter(|s| s.success())
    };
    psql("CREATE TABLE IF NOT EXISTS courier_raw (id BIGSERIAL PRIMARY KEY, data BYTEA)")?;
    let output = std::process::Command::new("pgbench")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-n",
            "-T",
            "5",
        ])
        .args(["-c", &clients.to_string(), "-j", "2", "-f"])
        .arg(&script)
        .arg("postgres")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    // "tps = 1234.567890 (without initial connection time)"
    let line = text.lines().find(|l| l.starts_with("tps = "))?;
    line.trim_start_matches("tps = ")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Publish -> receive latency over `samples` sequential messages: (p50, p99).
async fn latency(bus: &dyn MessageBus, samples: usize) -> (Duration, Duration) {
    let topic = Topic::new(&format!("{}/latency", unique_prefix())).expect("valid");
    let mut sub = bus
        .subscribe(&topic, SubscribeFrom::Live)
        .await
        .expect("subscribe");
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        bus.publish(&topic, Bytes::from_static(&[b'x'; 100]))
            .await
            .expect("publish");
        sub.next().await.expect("open").expect("message");
        times.push(started.elapsed());
    }
    times.sort();
    (times[samples / 2], times[samples * 99 / 100])
}

/// `redis-benchmark` XADD against the same server: (requests/s unpipelined, pipelined x16).
fn redis_benchmark(port: u16) -> Option<(f64, f64)> {
    let run = |pipeline: &str| -> Option<f64> {
        let output = std::process::Command::new("redis-benchmark")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-n",
                "20000",
                "-c",
                "1",
                "-P",
                pipeline,
                "-q",
            ])
            .args(["XADD", "courier:raw", "*", "p", &"x".repeat(100)])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&output.stdout);
        // "XADD courier:raw * p xxx: 12345.67 requests per second, p50=..."
        let tail = text
            .rsplit(':')
            .find(|part| part.contains("requests per second"))?;
        tail.split_whitespace().next()?.parse().ok()
    };
    Some((run("1")?, run("16")?))
}

/// Publishers at once in the many-topics publish case.
const PUBLISHERS: usize = 32;

fn bus_benches(c: &mut Criterion) {
    let rt = runtime();
    let (redis, etcd, postgres) = rt.block_on(async {
        (
            Redis::start().await.expect("redis"),
            Etcd::start().await.expect("etcd"),
            Postgres::start().await.expect("postgres"),
        )
    });
    let endpoints = etcd.endpoints();
    let prefix = unique_prefix();
    let buses: Vec<(&str, Arc<dyn MessageBus>)> = rt.block_on(async {
        vec![
            ("memory", Arc::new(MemoryBus::new()) as Arc<dyn MessageBus>),
            (
                "etcd",
                Arc::new(
                    EtcdBus::connect(
                        &endpoints,
                        EtcdBusConfig::default().with_prefix(format!("bench/{prefix}")),
                    )
                    .await
                    .expect("etcd bus"),
                ),
            ),
            (
                "redis",
                Arc::new(
                    RedisBus::connect(
                        &redis.url(),
                        RedisBusConfig::default().with_key_prefix(format!("bench:{prefix}")),
                    )
                    .await
                    .expect("redis bus"),
                ),
            ),
            (
                "postgres",
                Arc::new(
                    PgBus::connect(&postgres.url(), PgBusConfig::default())
                        .await
                        .expect("postgres bus"),
                ),
            ),
        ]
    });
    let mut group = quick(c);
    group.throughput(Throughput::Elements(1));
    for (backend, bus) in &buses {
        let topic = Topic::new(&format!("{prefix}/publish")).expect("valid");
        group.bench_function(
            BenchmarkId::new(format!("publish/{backend}"), "100B"),
            |b| {
                b.to_async(&rt).iter(|| async {
                    bus.publish(&topic, Bytes::from_static(&[b'x'; 100]))
                        .await
                        .expect("publish")
                })
            },
        );
    }
    // 32 publishers at once, each on a topic of its own: whether publishes to different
    // topics wait for each other (Postgres commits transactions that notify one at a time).
    group.throughput(Throughput::Elements(PUBLISHERS as u64));
    for (backend, bus) in &buses {
        let topics: Vec<Topic> = (0..PUBLISHERS)
            .map(|i| Topic::new(&format!("{prefix}/publish-{i}")).expect("valid"))
            .collect();
        group.bench_function(
            BenchmarkId::new(format!("publish/{backend}/{PUBLISHERS}topics"), "100B"),
            |b| {
                b.to_async(&rt).iter(|| {
                    futures::future::join_all(topics.iter().map(|topic| async move {
                        bus.publish(topic, Bytes::from_static(&[b'x'; 100]))
                            .await
                            .expect("publish")
                    }))
                })
            },
        );
    }
    group.throughput(Throughput::Elements(1));
    let client = rt
        .block_on(EtcdClient::connect(&endpoints, Duration::from_secs(5)))
        .expect("raw etcd");
    group.bench_function(BenchmarkId::new("publish_raw/etcd", "100B"), |b| {
        b.to_async(&rt).iter(|| {
            let request = PutRequest {
                key: b"bench/raw".to_vec(),
                value: vec![b'x'; 132],
                ..PutRequest::default()
            };
            let mut kv = client.kv();
            async move { kv.put(request).await.expect("put") }
        })
    });
    group.finish();

    for (backend, bus) in &buses {
        let (p50, p99) = rt.block_on(latency(&**bus, 2000));
        println!(
            "latency publish->receive {backend:>6}: p50 {:>8.1} us  p99 {:>8.1} us",
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6
        );
    }
    let port = redis
        .url()
        .trim_start_matches("redis://127.0.0.1:")
        .trim_end_matches('/')
        .parse::<u16>()
        .ok();
    match port.and_then(redis_benchmark) {
        Some((plain, pipelined)) => println!(
            "redis-benchmark XADD 100 B, 1 client: {plain:.0} req/s; pipelined x16: {pipelined:.0} req/s"
        ),
        None => println!(
            "redis-benchmark: not available (install redis-tools) or server not on loopback"
        ),
    }
}

criterion_group!(benches, storage_benches, bus_benches);
criterion_main!(benches);
