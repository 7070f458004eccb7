//! B7: `courier broker` killed with SIGKILL under load and restarted on the same storage and
//! port within 1 s, on embedded SQLite, the embedded log, Redis and Postgres (testkit servers,
//! loopback).
//!
//! Several producers send continuously to one reliable topic, each send awaited for its
//! acknowledgement; one consumer acks what it receives except a few messages it holds
//! unacked. The broker is killed mid-load and started again; the same client, producer and
//! consumer objects carry on by themselves. Then: every acknowledged send was received (no
//! acked loss), every held message came again (unacked redelivered, at its offset), the
//! topic's stored offsets are 0, 1, 2, … with no gap or repeat, and only a send in flight at
//! the kill may be stored twice (at-least-once: its acknowledgement was lost). The restarted
//! broker's `--metrics-addr` endpoint counts what it accepted and holds.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use courier::StreamStorage;
use courier::broker::catalog::{decode_record, topic_log_stream};
use courier::broker::topic::TopicName;
use courier::storage::{Offset, ReadLimits};
use courier_broker::client::{BrokerClient, Consumer, Producer};
use courier_testkit::fixtures::{Postgres, Redis};
use futures::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[path = "broker/metrics.rs"]
mod metrics;
#[path = "broker/node.rs"]
mod node;
use metrics::{sample, scrape};
use node::{free_port, metrics_port, start_broker, url};

const TOPIC: &str = "/default/crash-orders";
const PRODUCERS: usize = 3;
/// Each producer's sends are bounded, whatever happens.
const MAX_SENDS_PER_PRODUCER: usize = 20_000;
/// Acknowledged sends before the kill, so that it lands mid-load.
const ACKED_BEFORE_KILL: usize = 150;
/// Acknowledged sends each producer must get after the restart: it recovered.
const ACKED_AFTER_RESTART: usize = 30;
/// Messages the consumer holds unacked before the kill.
const HELD: usize = 8;
/// Every wait in the test ends by then.
const PHASE_LIMIT: Duration = Duration::from_secs(60);

/// Where the broker keeps its topics.
enum Storage {
    Sqlite(PathBuf),
    /// `sync=normal`: no fsync per commit, so a lone append commits on the handler's thread.
    SqliteNoFsync(PathBuf),
    /// The embedded log in this directory. One process holds it at a time, so the test reads
    /// a copy of its journal taken while the broker runs (a prefix of what it wrote).
    Log(PathBuf),
    Url(String),
}

impl Storage {
    fn flag(&self) -> String {
        match self {
            Storage::Sqlite(path) => format!("sqlite:{}", path.display()),
            Storage::SqliteNoFsync(path) => format!("sqlite:{}?sync=normal", path.display()),
            Storage::Log(dir) => format!("log:{}", dir.display()),
            Storage::Url(url) => url.clone(),
        }
    }

    /// The same storage the broker opens, to read the topic log back.
    async fn open(&self) -> Arc<dyn StreamStorage> {
        use courier::impls::{log, postgres, redis, sqlite};
        match self {
            Storage::Log(dir) => {
                static COPIES: std::sync::atomic::AtomicUsize =
                    std::sync::atomic::AtomicUsize::new(0);
                // A copy taken while the broker writes may catch a group half written, which
                // the open cuts off as a torn tail, or, should a page of it be copied before
                // the write and the next one after, as damage: copied again then.
                let mut refused = Vec::new();
                for _ in 0..5 {
                    let n = COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let copy = dir.with_extension(format!("copy-{n}"));
                    std::fs::create_dir_all(&copy).expect("copy dir");
                    std::fs::copy(dir.join("journal.log"), copy.join("journal.log"))
                        .expect("copy the journal");
                    match log::LogStreamStorage::open(&copy, log::LogStorageConfig::default()).await
                    {
                        Ok(store) => return Arc::new(store),
                        Err(e) => refused.push(e.to_string()),
                    }
                }
                panic!("no copy of the journal opened: {refused:?}");
            }
            Storage::Sqlite(path) | Storage::SqliteNoFsync(path) => Arc::new(
                sqlite::SqliteStreamStorage::connect(path, sqlite::SqliteStorageConfig::default())
                    .await
                    .expect("sqlite"),
            ),
            Storage::Url(url) if url.starts_with("redis") => Arc::new(
                redis::RedisStreamStorage::connect(url, redis::RedisStorageConfig::default())
                    .await
                    .expect("redis"),
            ),
            Storage::Url(url) => Arc::new(
                postgres::PgStreamStorage::connect(url, postgres::PgStorageConfig::default())
                    .await
                    .expect("postgres"),
            ),
        }
    }
}

/// What the producers and the consumer saw, shared with the test.
#[derive(Default)]
struct Seen {
    /// Payloads whose send was acknowledged, per producer.
    acked: Vec<Vec<String>>,
    /// Send errors (the client gave up), per producer.
    send_errors: Vec<Vec<String>>,
    /// Every delivery: payload → the offsets it came at (one per delivery).
    received: HashMap<String, Vec<u64>>,
    /// Payloads the consumer received and did not ack before the kill.
    held: Vec<String>,
    /// Error items of the consumer stream.
    consumer_errors: Vec<String>,
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sends `p<index>-<n>` for n = 0, 1, … until `stop`, awaiting each acknowledgement.
async fn produce(
    index: usize,
    producer: Arc<Producer>,
    seen: Arc<Mutex<Seen>>,
    stop: CancellationToken,
) {
    for n in 0..MAX_SENDS_PER_PRODUCER {
        let payload = format!("p{index}-{n}");
        let outcome = tokio::select! {
            _ = stop.cancelled() => return,
            outcome = producer.send(payload.clone().into_bytes()) => outcome,
        };
        let mut seen = lock(&seen);
        match outcome {
            Ok(_) => seen.acked[index].push(payload),
            Err(error) => seen.send_errors[index].push(error.to_string()),
        }
    }
}

/// Receives until `stop`: acks everything, except that while `hold` is set it keeps up to
/// [`HELD`] messages unacked.
async fn consume(
    mut consumer: Consumer,
    seen: Arc<Mutex<Seen>>,
    hold: CancellationToken,
    stop: CancellationToken,
) -> Consumer {
    loop {
        let item = tokio::select! {
            _ = stop.cancelled() => return consumer,
            item = consumer.next() => item,
        };
        let message = match item {
            Some(Ok(message)) => message,
            Some(Err(error)) => {
                lock(&seen).consumer_errors.push(error.to_string());
                continue;
            }
            None => return consumer,
        };
        let payload = String::from_utf8_lossy(message.payload()).into_owned();
        let keep = {
            let mut seen = lock(&seen);
            seen.received
                .entry(payload.clone())
                .or_default()
                .push(message.offset());
            let keep = !hold.is_cancelled() && seen.held.len() < HELD && message.offset() % 5 == 2;
            if keep {
                seen.held.push(payload);
            }
            keep
        };
        if !keep {
            // An ack lost to the kill only means one more delivery.
            let _ = message.ack().await;
        }
    }
}

/// Polls `check` every 20 ms for at most [`PHASE_LIMIT`]; panics naming `what` otherwise.
async fn until(what: &str, seen: &Mutex<Seen>, mut check: impl FnMut(&Seen) -> bool) {
    let deadline = Instant::now() + PHASE_LIMIT;
    while Instant::now() < deadline {
        if check(&lock(seen)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = lock(seen);
    panic!(
        "{what}: not within {PHASE_LIMIT:?} (acked {:?}, send errors {:?}, received {}, held {}, consumer errors {:?})",
        seen.acked.iter().map(Vec::len).collect::<Vec<_>>(),
        seen.send_errors,
        seen.received.len(),
        seen.held.len(),
        seen.consumer_errors
    );
}

/// The topic log as stored: (offset in the message id, payload), in log order.
async fn stored(storage: &dyn StreamStorage) -> Vec<(u64, String)> {
    let stream = topic_log_stream(&TopicName::new(TOPIC).expect("valid"));
    let mut from: Option<Offset> = None;
    let mut out = Vec::new();
    for _ in 0..1_000 {
        let batch = storage
            .read(&stream, from.clone(), ReadLimits::default())
            .await
            .expect("the topic log");
        for record in &batch.records {
            let message = decode_record(&record.data).expect("a StreamMessage");
            let offset = message.msg_id.expect("msg_id").topic_offset;
            out.push((
                offset,
                String::from_utf8_lossy(&message.payload).into_owned(),
            ));
        }
        if batch.up_to_date || batch.records.is_empty() {
            return out;
        }
        from = Some(batch.next_offset);
    }
    panic!("the topic log did not end within 1000 reads");
}

async fn crash_under_load(storage: Storage, dir: &Path) {
    // The restarted broker comes back on the same gRPC port; the metrics port the broker
    // binds itself, read from its log when scraped.
    let port = free_port();
    let log = dir.join("broker.log");
    let flag = storage.flag();
    let args = ["--storage", flag.as_str(), "--metrics-addr", "127.0.0.1:0"];
    let mut broker = start_broker(port, &args, &log).await;

    let client = BrokerClient::builder()
        .service_url(url(port))
        .build()
        .await
        .expect("client");
    let mut producers = Vec::new();
    for index in 0..PRODUCERS {
        let producer = client
            .producer(TOPIC)
            .name(format!("p{index}"))
            .reliable()
            .create()
            .await
            .expect("producer");
        producers.push(Arc::new(producer));
    }
    let ids_before: Vec<_> = producers.iter().map(|p| p.producer_ids()).collect();
    let consumer = client
        .consumer(TOPIC)
        .name("c1")
        .subscription("crash")
        .exclusive()
        .subscribe()
        .await
        .expect("consumer");

    let seen = Arc::new(Mutex::new(Seen {
        acked: vec![Vec::new(); PRODUCERS],
        send_errors: vec![Vec::new(); PRODUCERS],
        ..Seen::default()
    }));
    let (stop_producers, stop_consumer, hold) = (
        CancellationToken::new(),
        CancellationToken::new(),
        CancellationToken::new(),
    );
    let senders: Vec<_> = producers
        .iter()
        .enumerate()
        .map(|(index, producer)| {
            tokio::spawn(produce(
                index,
                producer.clone(),
                seen.clone(),
                stop_producers.clone(),
            ))
        })
        .collect();
    let receiver = tokio::spawn(consume(
        consumer,
        seen.clone(),
        hold.clone(),
        stop_consumer.clone(),
    ));

    until("load before the kill", &seen, |s| {
        s.acked.iter().map(Vec::len).sum::<usize>() >= ACKED_BEFORE_KILL && s.held.len() == HELD
    })
    .await;
    hold.cancel();
    let killed_at = Instant::now();
    broker.kill().await.expect("SIGKILL");
    let acked_at_kill: Vec<usize> = lock(&seen).acked.iter().map(Vec::len).collect();
    broker = start_broker(port, &args, &log).await;
    let restart = killed_at.elapsed();

    until("every producer acknowledged again", &seen, |s| {
        s.acked
            .iter()
            .zip(&acked_at_kill)
            .all(|(acked, before)| acked.len() >= before + ACKED_AFTER_RESTART)
    })
    .await;
    stop_producers.cancel();
    for sender in senders {
        sender.await.expect("producer task");
    }
    // Everything stored by now, acked or not (a send cancelled by the stop may still have
    // been stored), must reach the consumer, each at its stored offset.
    let snapshot = stored(storage.open().await.as_ref()).await;
    until(
        "every stored message received, every held one again",
        &seen,
        |s| {
            snapshot.iter().all(|(offset, payload)| {
                s.received
                    .get(payload)
                    .is_some_and(|offsets| offsets.contains(offset))
            }) && s
                .held
                .iter()
                .all(|p| s.received.get(p).is_some_and(|o| o.len() >= 2))
        },
    )
    .await;
    stop_consumer.cancel();
    let consumer = receiver.await.expect("consumer task");
    let text = scrape(metrics_port(&log)).await;

    // The same objects recovered: producer ids unchanged, the consumer still attached.
    let ids_after: Vec<_> = producers.iter().map(|p| p.producer_ids()).collect();
    assert_eq!(
        ids_before, ids_after,
        "producers re-attached under their ids"
    );
    assert!(
        consumer.consumer_ids().values().all(Option::is_some),
        "the consumer is subscribed again"
    );
    consumer.close().await;
    for producer in &producers {
        producer.close().await;
    }
    assert_eq!(client.running_tasks(), 0, "close() leaves no task");
    broker.kill().await.expect("stop");
    let log_entries = stored(storage.open().await.as_ref()).await;
    assert!(
        log_entries.starts_with(&snapshot),
        "the log only grew (a cancelled send may land late)"
    );

    let seen = lock(&seen);
    assert!(
        seen.send_errors.iter().all(Vec::is_empty),
        "the producers never gave up (restart took {restart:?}): {:?}\n{}",
        seen.send_errors,
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    for held in &seen.held {
        let offsets = &seen.received[held];
        assert!(
            offsets.iter().all(|o| *o == offsets[0]),
            "{held} redelivered at its offset: {offsets:?}"
        );
    }

    let offsets: Vec<u64> = log_entries.iter().map(|(offset, _)| *offset).collect();
    let dense: Vec<u64> = (0..log_entries.len() as u64).collect();
    assert_eq!(
        offsets, dense,
        "stored offsets are 0, 1, 2, … with no gap or repeat"
    );
    let mut copies: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, payload) in &log_entries {
        *copies.entry(payload.as_str()).or_default() += 1;
    }
    for payload in seen.acked.iter().flatten() {
        assert!(
            copies.contains_key(payload.as_str()),
            "{payload} acked and stored"
        );
    }
    let twice: Vec<_> = copies.iter().filter(|(_, n)| **n > 1).collect();
    // The restarted process counts from zero: the sends it accepted are those acked since
    // (a send in flight at the kill, or at the producers' stop, may be accepted unacked).
    let acked_since: usize = seen
        .acked
        .iter()
        .zip(&acked_at_kill)
        .map(|(acked, before)| acked.len() - before)
        .sum();
    let produced = sample(
        &text,
        &format!("courier_broker_messages_produced_total{{topic=\"{TOPIC}\"}}"),
    )
    .unwrap_or_default() as usize;
    assert!(
        (acked_since..=acked_since + 2 * PRODUCERS).contains(&produced),
        "produced {produced}, acked since the restart {acked_since}\n{text}"
    );
    assert_eq!(
        sample(&text, "courier_broker_producers"),
        Some(PRODUCERS as f64),
        "{text}"
    );
    assert_eq!(
        sample(&text, "courier_broker_subscriptions"),
        Some(1.0),
        "{text}"
    );
    assert!(
        twice.len() <= PRODUCERS && twice.iter().all(|(_, n)| **n == 2),
        "only a send in flight at the kill is stored twice: {twice:?}"
    );
    eprintln!(
        "B7 on {}: restart {restart:?}, {} stored, {} acked, {} held and redelivered, {} stored twice, {} consumer error items",
        flag.split(':').next().unwrap_or_default(),
        log_entries.len(),
        seen.acked.iter().map(Vec::len).sum::<usize>(),
        seen.held.len(),
        twice.len(),
        seen.consumer_errors.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b7_sigkill_under_load_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("broker.db");
    crash_under_load(Storage::Sqlite(db), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b7_sigkill_under_load_on_sqlite_without_fsync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("broker.db");
    crash_under_load(Storage::SqliteNoFsync(db), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b7_sigkill_under_load_on_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("broker");
    crash_under_load(Storage::Log(log), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b7_sigkill_under_load_on_redis() {
    let redis = Redis::start().await.expect("redis fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    crash_under_load(Storage::Url(redis.url()), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b7_sigkill_under_load_on_postgres() {
    let postgres = Postgres::start().await.expect("postgres fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    crash_under_load(Storage::Url(postgres.url()), dir.path()).await;
}
