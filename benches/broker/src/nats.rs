//! The NATS JetStream side: Debian's `nats-server` with file storage, acked publishes and an
//! explicit-ack pull consumer, driven by async-nats the way `courier.rs` drives our broker.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::AckPolicy, consumer::pull, stream::StorageType};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::process::{Child, Command};

use crate::courier::free_port;
use crate::measure::{Outcome, age_of, cpu_time, own_cpu_time, stamped_payload};

/// How often the consumer looks whether the producers are done.
const POLL: Duration = Duration::from_millis(100);

/// A `nats-server -js` process with its store in a fresh directory; killed when dropped.
pub struct NatsProcess {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl NatsProcess {
    /// Starts `bin -js` on a free loopback port and waits (at most 30 s) until it accepts
    /// connections.
    pub async fn start(bin: &str) -> Result<NatsProcess, String> {
        let port = free_port()?;
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let store = dir.path().join("js");
        let child = Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {bin}: {e}"))?;
        let addr = format!("127.0.0.1:{port}");
        let started = Instant::now();
        while tokio::net::TcpStream::connect(&addr).await.is_err() {
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!("nats-server on {addr} did not come up in 30 s"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(NatsProcess {
            child,
            url: format!("nats://{addr}"),
            _dir: dir,
        })
    }

    /// Kills the process and reaps it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// One case: `producers` tasks each publishing 1 KiB messages one after another (each awaits
/// its ack) for `duration` into a fresh file-storage stream, one explicit-ack pull consumer.
pub async fn run_case(
    server: &NatsProcess,
    name: &str,
    producers: usize,
    duration: Duration,
    drain_timeout: Duration,
) -> Result<Outcome, String> {
    let client = async_nats::connect(&server.url)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let js = jetstream::new(client);
    let subject = format!("bench.{name}");
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: name.to_string(),
            subjects: vec![subject.clone()],
            storage: StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("create stream: {e}"))?;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("bench".to_string()),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("create consumer: {e}"))?;
    let messages = consumer
        .messages()
        .await
        .map_err(|e| format!("messages: {e}"))?;

    let pid = server.child.id().ok_or("nats-server exited")?;
    let cpu_before = cpu_time(pid)?;
    let client_cpu_before = own_cpu_time()?;
    let total = Arc::new(AtomicU64::new(u64::MAX));
    let receiving = tokio::spawn(receive(messages, total.clone(), drain_timeout));

    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut sending = FuturesUnordered::new();
    for _ in 0..producers {
        let (js, subject, sent) = (js.clone(), subject.clone(), sent.clone());
        sending.push(async move {
            while Instant::now() < deadline {
                let acked = match js.publish(subject.clone(), stamped_payload().into()).await {
                    Ok(ack) => ack
                        .await
                        .map(|_| ())
                        .map_err(|e| format!("publish ack: {e}")),
                    Err(e) => Err(format!("publish: {e}")),
                };
                if let Err(e) = acked {
                    return Some(e);
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            None
        });
    }
    let mut failures = Vec::new();
    while let Some(failure) = sending.next().await {
        failures.extend(failure);
    }
    let produce_time = started.elapsed();
    total.store(sent.load(Ordering::Relaxed), Ordering::Release);
    let (received, latencies) = receiving
        .await
        .map_err(|e| format!("consumer task: {e}"))??;
    let server_cpu = cpu_time(pid)?.saturating_sub(cpu_before);
    let client_cpu = own_cpu_time()?.saturating_sub(client_cpu_before);
    if let Some(first) = failures.first() {
        return Err(first.clone());
    }
    Ok(Outcome {
        sent: sent.load(Ordering::Relaxed),
        received,
        produce_time,
        latencies,
        server_cpu,
        client_cpu,
    })
}

/// Receives and acks until `total` messages arrived (`u64::MAX` until the producers are
/// done), or nothing more arrives for `drain_timeout` after they are done.
async fn receive(
    mut messages: pull::Stream,
    total: Arc<AtomicU64>,
    drain_timeout: Duration,
) -> Result<(u64, Vec<Duration>), String> {
    let mut latencies = Vec::new();
    let mut received = 0u64;
    let mut last = Instant::now();
    while received < total.load(Ordering::Acquire) {
        let message = match tokio::time::timeout(POLL, messages.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(e))) => return Err(format!("receive: {e}")),
            Ok(None) => break,
            Err(_)
                if total.load(Ordering::Acquire) != u64::MAX && last.elapsed() > drain_timeout =>
            {
                break;
            }
            Err(_) => continue,
        };
        last = Instant::now();
        if let Some(age) = age_of(&message.payload) {
            latencies.push(age);
        }
        received += 1;
        // A JetStream ack is a publish without a reply: no round trip to wait for.
        message.ack().await.map_err(|e| format!("ack: {e}"))?;
    }
    Ok((received, latencies))
}
