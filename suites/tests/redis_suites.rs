//! The universal bus suite against `RedisBus` on a real Redis from the testkit (append-only
//! file with fsync always, so acknowledged publishes survive the restart case), plus trimming
//! and writes while the server loads its data.

use std::time::Duration;

use async_trait::async_trait;
use courier::Classify;
use courier::bus::{BusError, MessageBus, SubscribeFrom, Topic};
use courier::impls::redis::redis::{self, aio::MultiplexedConnection};
use courier::impls::redis::{
    RedisBus, RedisBusConfig, RedisDelivery, RedisDurability, RedisStorageConfig,
    RedisStreamStorage, server_durability,
};
use courier::storage::{
    AppendRequest, ProducerStamp, ReadLimits, StorageError, StreamConfig, StreamName, StreamStorage,
};
use courier::traits::clock::ManualClock;
use courier_testkit::fixtures::{Redis, SharedFixture, unique_prefix};
use courier_testkit::suites::storage_races::append_at_once;
use courier_testkit::suites::{BusFactory, StorageFactory};
use tokio::time::Instant;

/// The run's shared Redis (a private one in the restart cases), a key prefix per factory;
/// every `connect` is a new bus (a node) on it, same prefix.
struct RedisFactory {
    redis: SharedFixture<Redis>,
    url: String,
    prefix: String,
    delivery: RedisDelivery,
    /// What the storages decide expiry against.
    clock: ManualClock,
}

impl RedisFactory {
    async fn start() -> RedisFactory {
        RedisFactory::start_with(RedisDelivery::Streams).await
    }

    async fn start_with(delivery: RedisDelivery) -> RedisFactory {
        let redis = Redis::shared().await.expect("redis starts");
        let url = redis.url();
        let prefix = format!("courier-test:{}", unique_prefix());
        RedisFactory {
            redis: SharedFixture::new(redis),
            url,
            prefix,
            delivery,
            clock: ManualClock::starting_now(),
        }
    }

    fn config(&self) -> RedisBusConfig {
        RedisBusConfig::default()
            .with_key_prefix(self.prefix.clone())
            .with_delivery(self.delivery)
    }
}

#[async_trait]
impl BusFactory for RedisFactory {
    type Bus = RedisBus;
    async fn connect(&self) -> RedisBus {
        RedisBus::connect(&self.url, self.config())
            .await
            .expect("connect to redis")
    }
    async fn stop_server(&self) -> Result<(), String> {
        self.redis.stop().await
    }
    async fn start_server(&self) -> Result<(), String> {
        self.redis.start().await
    }
}

mod redis_bus {
    use super::*;

    courier_testkit::bus_suite!(
        factory = RedisFactory::start().await,
        persistent = true,
        resume = true,
        ordered = true,
        exactly_once = true,
        lag_reporting = true,
        shared = true,
        survives_restart = true,
    );
}

/// The same suite with at-most-once pub/sub delivery: no persistence, no resume, and no
/// promise across a server restart (messages published while a subscriber reconnects are lost).
mod redis_pubsub_bus {
    use super::*;

    courier_testkit::bus_suite!(
        factory = RedisFactory::start_with(RedisDelivery::PubSub).await,
        persistent = false,
        resume = false,
        ordered = true,
        exactly_once = true,
        lag_reporting = true,
        shared = true,
        survives_restart = false,
    );
}

#[async_trait]
impl StorageFactory for RedisFactory {
    type Storage = RedisStreamStorage;
    async fn connect(&self) -> RedisStreamStorage {
        let config = RedisStorageConfig::default()
            .with_key_prefix(self.prefix.clone())
            .with_clock(self.clock.shared());
        RedisStreamStorage::connect(&self.url, config)
            .await
            .expect("connect to redis")
    }
    fn clock(&self) -> Option<ManualClock> {
        Some(self.clock.clone())
    }
    async fn stop_server(&self) -> Result<(), String> {
        self.redis.stop().await
    }
    async fn start_server(&self) -> Result<(), String> {
        self.redis.start().await
    }
}

mod redis_storage {
    use super::*;

    courier_testkit::storage_suite!(
        factory = RedisFactory::start().await,
        durable = true,
        shared = true,
        ttl = true,
        producers = true,
        forks = true,
        survives_restart = true,
        keyed_append = true,
    );
}

#[tokio::test]
async fn resuming_from_a_trimmed_position_is_an_explicit_error() {
    let factory = RedisFactory::start().await;
    let config = factory.config().with_max_len_per_topic(10);
    let bus = RedisBus::connect(&factory.url, config)
        .await
        .expect("connect");
    let topic = Topic::new("trimmed").expect("valid");
    let first = bus.publish(&topic, "first".into()).await.expect("publish");
    for i in 0..500 {
        bus.publish(&topic, format!("m{i}").into())
            .await
            .expect("publish");
    }
    match bus
        .subscribe(
            &topic,
            SubscribeFrom::After(first.position.expect("position")),
        )
        .await
    {
        Err(BusError::PositionUnavailable { reason, .. }) => {
            assert!(reason.contains("trimmed"), "{reason}")
        }
        Err(other) => panic!("expected PositionUnavailable, got {other}"),
        Ok(_) => panic!("expected PositionUnavailable, got a subscription"),
    }
}

#[tokio::test]
async fn unreachable_server_is_a_retryable_error() {
    // Port 1 on loopback: nothing listens there.
    let result = RedisBus::connect("redis://127.0.0.1:1/", RedisBusConfig::default()).await;
    match result {
        Err(err) => assert!(courier::Classify::is_retryable(&err), "{err}"),
        Ok(_) => panic!("connected to a closed port"),
    }
}

/// `CONFIG SET name value` on `conn`.
async fn config_set(conn: &mut MultiplexedConnection, name: &str, value: &str) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("CONFIG SET {name} {value}: {e}"));
}

/// The durability check reads the server's persistence settings: `appendonly yes` with
/// `appendfsync always` is durable, a weaker setting is named, and a server refusing `CONFIG`
/// (here: a user whose ACL forbids it, as managed services do) gives "unknown".
#[tokio::test]
async fn durability_check_reads_the_servers_settings() {
    let server = Redis::start().await.expect("redis starts");
    let url = server.url();
    let client = redis::Client::open(url.as_str()).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let mut original = Vec::new();
    for name in ["appendonly", "appendfsync"] {
        let pairs: Vec<(String, String)> = redis::cmd("CONFIG")
            .arg("GET")
            .arg(name)
            .query_async(&mut conn)
            .await
            .expect("CONFIG GET");
        original.extend(pairs);
    }
    config_set(&mut conn, "appendonly", "yes").await;
    config_set(&mut conn, "appendfsync", "always").await;
    assert_eq!(
        server_durability(&mut conn).await,
        RedisDurability::EveryWrite
    );
    for (name, value) in [
        ("appendfsync", "everysec"),
        ("appendfsync", "no"),
        ("appendonly", "no"),
    ] {
        config_set(&mut conn, name, value).await;
        match server_durability(&mut conn).await {
            RedisDurability::Weaker { setting, risk } => {
                assert_eq!(setting, format!("{name} {value}"));
                assert!(risk.contains("lose") || risk.contains("lost"), "{risk}");
            }
            other => panic!("{name} {value} reported as {other:?}"),
        }
    }
    for (name, value) in &original {
        config_set(&mut conn, name, value).await;
    }

    let user = format!("courier-no-config-{}", unique_prefix());
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER", &user, "on", ">secret", "~*", "&*", "+@all", "-config",
        ])
        .query_async(&mut conn)
        .await
        .expect("ACL SETUSER");
    let limited_url = url.replacen("redis://", &format!("redis://{user}:secret@"), 1);
    let mut limited = redis::Client::open(limited_url.as_str())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect as the limited user");
    let durability = server_durability(&mut limited).await;
    let _: () = redis::cmd("ACL")
        .arg(&["DELUSER", &user])
        .query_async(&mut conn)
        .await
        .expect("ACL DELUSER");
    match durability {
        RedisDurability::Unknown { reason } => {
            assert!(reason.contains("CONFIG GET appendonly"), "{reason}")
        }
        other => panic!("a refused CONFIG reported as {other:?}"),
    }
}

/// Connecting to a server that does not fsync every write warns, naming the backend and the
/// setting; the bus warns only for Streams delivery (pub/sub keeps nothing anyway), and a
/// durable server gives no warning. On a private server: it changes the server's settings.
#[tokio::test]
async fn connect_warns_when_the_server_is_not_durable() {
    courier_testkit::fixtures::with_private_servers(connect_warns()).await;
}

async fn connect_warns() {
    use tracing_subscriber::util::SubscriberInitExt;
    let log = courier_testkit::logs::CapturedLog::default();
    let writer = log.clone();
    // This test's thread only (the runtime is current-thread, so connect logs here).
    let _subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish()
        .set_default();
    let factory = RedisFactory::start().await;
    let mut conn = redis::Client::open(factory.url.as_str())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let connect_all = async || {
        let storage = RedisStreamStorage::connect(
            &factory.url,
            RedisStorageConfig::default().with_key_prefix(factory.prefix.clone()),
        )
        .await
        .expect("storage connects");
        let bus = RedisBus::connect(&factory.url, factory.config())
            .await
            .expect("bus connects");
        let pubsub = RedisBus::connect(
            &factory.url,
            factory.config().with_delivery(RedisDelivery::PubSub),
        )
        .await
        .expect("pub/sub bus connects");
        drop((storage, bus, pubsub));
    };

    config_set(&mut conn, "appendfsync", "always").await;
    connect_all().await;
    let logged = log.take();
    assert!(
        !logged.contains("WARN"),
        "a durable server drew a warning: {logged}"
    );

    config_set(&mut conn, "appendfsync", "everysec").await;
    connect_all().await;
    let logged = log.take();
    config_set(&mut conn, "appendfsync", "always").await;
    let warnings: Vec<&str> = logged.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 2, "one per durable backend: {logged}");
    for backend in ["RedisStreamStorage", "RedisBus"] {
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(backend) && w.contains("appendfsync everysec")),
            "no warning naming {backend} and the setting: {logged}"
        );
    }
}

/// While Redis loads its data after a restart it answers `LOADING`: an append or a publish
/// then fails with a retryable error (the streams server's 503, not a permanent 500), and the
/// same instances write again once the data is loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_while_redis_loads_are_retryable() {
    let mut redis = Redis::start_slow_loading(Duration::from_micros(100))
        .await
        .expect("redis starts");
    let url = redis.url();
    let prefix = format!("courier-test:{}", unique_prefix());
    let storage = RedisStreamStorage::connect(
        &url,
        RedisStorageConfig::default().with_key_prefix(prefix.clone()),
    )
    .await
    .expect("connect storage");
    let bus = RedisBus::connect(
        &url,
        RedisBusConfig::default().with_key_prefix(prefix.clone()),
    )
    .await
    .expect("connect bus");
    let name = StreamName::new("loading").expect("valid");
    let topic = Topic::new("loading").expect("valid");
    storage
        .create(&name, StreamConfig::with_content_type("text/plain"), vec![])
        .await
        .expect("create");
    // 30 000 keys at 100 µs each: seconds of loading after the restart.
    redis
        .command(&[
            "EVAL",
            "for i = 1, 30000 do redis.call('SET', KEYS[1] .. i, i) end",
            "1",
            &format!("{prefix}:fill:"),
        ])
        .await
        .expect("fill");
    redis.restart().await.expect("restart");

    let is_loading = async |redis: &Redis| matches!(redis.command(&["PING"]).await, Err(e) if e.to_string().contains("LOADING"));
    let (mut appends_refused, mut publishes_refused) = (0, 0);
    let mut acknowledged = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while is_loading(&redis).await && Instant::now() < deadline {
        // Errors other than LOADING (a pooled connection the restart closed) are retryable
        // anyway; only the ones saying the server is loading are counted.
        match storage.append(&name, AppendRequest::record("during")).await {
            Err(e) => {
                assert!(
                    e.is_retryable() && matches!(e, StorageError::Unavailable { .. }),
                    "an append while Redis loads must be retryable (Unavailable): {e}"
                );
                appends_refused += usize::from(e.to_string().contains("oading"));
            }
            Ok(_) => {
                // Loading ended between the check and the append: that append is acknowledged.
                acknowledged.push(&b"during"[..]);
                break;
            }
        }
        match bus.publish(&topic, "during".into()).await {
            Err(e) => {
                assert!(
                    e.is_retryable(),
                    "a publish while Redis loads must be retryable: {e}"
                );
                publishes_refused += usize::from(e.to_string().contains("oading"));
            }
            Ok(_) => break,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        appends_refused > 0 && publishes_refused > 0,
        "no write met the loading server ({appends_refused} appends, {publishes_refused} \
         publishes refused while loading): the load was too quick to test"
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    let appended = loop {
        match storage.append(&name, AppendRequest::record("after")).await {
            Ok(outcome) => break outcome,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("append after loading: {e}"),
        }
    };
    assert!(!appended.duplicate);
    acknowledged.push(&b"after"[..]);
    let batch = storage
        .read(&name, None, ReadLimits::default())
        .await
        .expect("read");
    let data: Vec<&[u8]> = batch.records.iter().map(|r| &r.data[..]).collect();
    assert_eq!(
        data, acknowledged,
        "a refused append was written, or an acknowledged one lost"
    );
    bus.publish(&topic, "after".into())
        .await
        .expect("publish after loading");
}

/// A server that stalls for longer than redis-rs's own 500 ms response timeout (here: frozen
/// for 1.5 s, as an fsync stall of `appendfsync always` can) still acknowledges the append
/// once it answers: with that default the storage reported a failure for a record Redis then
/// committed. A frozen server is still reported, as a retryable error, after the configured
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_shorter_than_the_response_timeout_is_waited_out() {
    let redis = SharedFixture::new(Redis::start().await.expect("redis starts"));
    let url = redis.lock().await.url();
    let prefix = format!("courier-test:{}", unique_prefix());
    let patient = RedisStreamStorage::connect(
        &url,
        RedisStorageConfig::default().with_key_prefix(prefix.clone()),
    )
    .await
    .expect("connect storage");
    let impatient = RedisStreamStorage::connect(
        &url,
        RedisStorageConfig::default()
            .with_key_prefix(prefix.clone())
            .with_response_timeout(Some(Duration::from_millis(300))),
    )
    .await
    .expect("connect storage");
    let name = StreamName::new("stalled").expect("valid");
    patient
        .create(&name, StreamConfig::with_content_type("text/plain"), vec![])
        .await
        .expect("create");
    // Both pools hold a connection before the freeze, so only the command waits.
    impatient
        .read(&name, None, ReadLimits::default())
        .await
        .expect("read");

    redis.freeze().await.expect("freeze");
    let started = Instant::now();
    let waiting = tokio::spawn(async move {
        let outcome = patient
            .append(&name, AppendRequest::record("stalled"))
            .await;
        (outcome, patient)
    });
    let name = StreamName::new("stalled").expect("valid");
    let refused = impatient
        .append(&name, AppendRequest::record("impatient"))
        .await;
    let refused_after = started.elapsed();
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(started.elapsed())).await;
    redis.thaw().await.expect("thaw");

    match refused {
        Err(e) => assert!(
            e.is_retryable(),
            "a timed-out command must be retryable: {e}"
        ),
        Ok(_) => panic!("a frozen server acknowledged an append"),
    }
    assert!(
        refused_after < Duration::from_secs(3),
        "the 300 ms response timeout answered after {refused_after:?}"
    );
    let (outcome, patient) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the append answers once the server is thawed")
        .expect("task");
    outcome.expect("the append outlives a 1.5 s stall");
    let batch = patient
        .read(&name, None, ReadLimits::default())
        .await
        .expect("read");
    let data: Vec<&[u8]> = batch.records.iter().map(|r| &r.data[..]).collect();
    // The impatient append was sent before its timeout fired, so Redis may have committed it
    // after the thaw: its outcome is unknown, the patient one's is not.
    assert!(data.contains(&&b"stalled"[..]), "{data:?}");
}

/// Concurrent appends to one stream on one node reach Redis as batches (one script call
/// each), not one call per append: on a private server, 64 appends at once take far fewer
/// `EVAL`s than 64, and each gets its own offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_to_one_stream_are_batched() {
    let (_server, url, storage, name) = stream_on_a_private_server("batched").await;
    let conn = command_counter(&url).await;
    let before = command_calls(&conn, "eval").await;
    let offsets = append_at_once(&storage, &name, 64).await;
    assert_eq!(offsets.len(), 64, "every append has its own offset");
    let calls = command_calls(&conn, "eval").await - before;
    assert!(
        calls <= 32,
        "64 concurrent appends took {calls} script calls: they are not batched"
    );
}

/// A connection for [`command_calls`].
async fn command_counter(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

/// How many times the server ran `command` (lower case) since it started, from `INFO
/// commandstats`.
async fn command_calls(conn: &MultiplexedConnection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn.clone())
        .await
        .expect("info");
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// After this process's first append to a stream, its next appends go to Redis as the
/// commit script alone: the stream's meta is not read again before each one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_after_the_first_do_not_read_the_meta_again() {
    let (_server, url, storage, name) = stream_on_a_private_server("cached").await;
    storage
        .append(&name, AppendRequest::record("first"))
        .await
        .expect("first append");
    let conn = command_counter(&url).await;
    let (reads, evals) = (
        command_calls(&conn, "hgetall").await,
        command_calls(&conn, "eval").await,
    );
    for i in 0..10 {
        storage
            .append(&name, AppendRequest::record(format!("r{i}")))
            .await
            .expect("append");
    }
    assert_eq!(command_calls(&conn, "eval").await - evals, 10);
    assert_eq!(
        command_calls(&conn, "hgetall").await - reads,
        0,
        "the meta was read again before appends"
    );
}

/// A node that appended to a stream, then another node deleted and re-created it and brought
/// its version back to the same number: the first node's next append lands in the new stream
/// (its remembered meta is refused because the generation differs), not in the old data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_after_another_node_re_created_the_stream_lands_in_the_new_one() {
    let (_server, a, b) = two_nodes_on_a_private_server().await;
    let name = StreamName::new("re-created").expect("valid");
    let text = || StreamConfig::with_content_type("text/plain");
    a.create(&name, text(), vec![]).await.expect("create");
    a.append(&name, AppendRequest::record("old"))
        .await
        .expect("a appends");
    b.delete(&name).await.expect("b deletes");
    b.create(&name, text(), vec![]).await.expect("b re-creates");
    b.append(&name, AppendRequest::record("new"))
        .await
        .expect("b appends: the version is back where a left it");
    a.append(&name, AppendRequest::record("from-a"))
        .await
        .expect("a appends again");
    let batch = b
        .read(&name, None, ReadLimits::default())
        .await
        .expect("read");
    let data: Vec<&[u8]> = batch.records.iter().map(|r| &r.data[..]).collect();
    assert_eq!(data, vec![&b"new"[..], &b"from-a"[..]]);
}

/// A Redis server of the test's own (so its command counts are the test's), a storage on it
/// and a created text stream `name`.
async fn stream_on_a_private_server(name: &str) -> (Redis, String, RedisStreamStorage, StreamName) {
    let server = Redis::start().await.expect("redis starts");
    let url = server.url();
    let storage = RedisStreamStorage::connect(
        &url,
        RedisStorageConfig::default().with_key_prefix(unique_prefix()),
    )
    .await
    .expect("connect storage");
    let name = StreamName::new(name).expect("valid");
    storage
        .create(&name, StreamConfig::with_content_type("text/plain"), vec![])
        .await
        .expect("create");
    (server, url, storage, name)
}

/// Answers that write nothing (a refusal, a producer's duplicate) are never decided on a meta
/// this process remembers from its last commit, since no compare-and-set checks it: after the
/// stream was closed, deleted and re-created here, an append is accepted (not `Closed`); and a
/// producer's retry through a node that appended before another node moved the stream on
/// answers the stream's current tail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_write_nothing_come_from_the_stored_meta() {
    let (_server, a, b) = two_nodes_on_a_private_server().await;
    let text = || StreamConfig::with_content_type("text/plain");

    let reopened = StreamName::new("reopened").expect("valid");
    a.create(&reopened, text(), vec![]).await.expect("create");
    a.append(&reopened, AppendRequest::record("last").and_close())
        .await
        .expect("append and close");
    b.delete(&reopened).await.expect("another node deletes");
    b.create(&reopened, text(), vec![])
        .await
        .expect("and re-creates");
    a.append(&reopened, AppendRequest::record("first of the new stream"))
        .await
        .expect("the re-created stream is open");

    let moved_on = StreamName::new("moved-on").expect("valid");
    a.create(&moved_on, text(), vec![]).await.expect("create");
    let stamp = ProducerStamp::new("p", 0, 0).expect("stamp");
    a.append(
        &moved_on,
        AppendRequest::record("p0").with_producer(stamp.clone()),
    )
    .await
    .expect("producer appends");
    for i in 0..3 {
        b.append(&moved_on, AppendRequest::record(format!("b{i}")))
            .await
            .expect("another node appends");
    }
    let tail = b.head(&moved_on).await.expect("head").next_offset;
    let retry = a
        .append(&moved_on, AppendRequest::record("p0").with_producer(stamp))
        .await
        .expect("retry");
    assert!(retry.duplicate, "a retry of seq 0 is a duplicate");
    assert_eq!(
        retry.next_offset, tail,
        "the duplicate answers the current tail"
    );
}

/// A Redis server of the test's own and two storage instances on it (two nodes).
async fn two_nodes_on_a_private_server() -> (Redis, RedisStreamStorage, RedisStreamStorage) {
    let server = Redis::start().await.expect("redis starts");
    let url = server.url();
    let config = RedisStorageConfig::default().with_key_prefix(unique_prefix());
    let a = RedisStreamStorage::connect(&url, config.clone())
        .await
        .expect("connect a");
    let b = RedisStreamStorage::connect(&url, config)
        .await
        .expect("connect b");
    (server, a, b)
}
