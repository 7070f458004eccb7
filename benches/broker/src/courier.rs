//! The Courier side: `courier broker` in a process of its own, driven by our Rust client.

use std::net::TcpListener;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use courier_broker::client::BrokerClient;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::process::{Child, Command};

use crate::measure::{Outcome, age_of, cpu_time, own_cpu_time, stamped_payload};

/// Acks in flight at once on the consumer side, so acking does not serialise receiving.
const ACKS_IN_FLIGHT: usize = 256;
/// How often the consumer looks whether the producers are done.
const POLL: Duration = Duration::from_millis(100);

/// A `courier broker` process on a free loopback port; killed when dropped.
pub struct BrokerProcess {
    child: Child,
    /// The broker's URL for clients.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl BrokerProcess {
    /// Starts `bin broker --storage storage` in a fresh working directory and waits (at most
    /// 30 s) until it accepts connections.
    pub async fn start(bin: &str, storage: &str) -> Result<BrokerProcess, String> {
        let port = free_port()?;
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(bin)
            .args(["broker", "--addr", &addr, "--storage", storage])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {bin}: {e}"))?;
        let started = Instant::now();
        while tokio::net::TcpStream::connect(&addr).await.is_err() {
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!("courier broker on {addr} did not come up in 30 s"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(BrokerProcess {
            child,
            url: format!("http://{addr}"),
            _dir: dir,
        })
    }

    /// The process id, for its CPU time.
    pub fn pid(&self) -> Result<u32, String> {
        self.child
            .id()
            .ok_or_else(|| "courier broker exited".to_string())
    }

    /// Kills the process and reaps it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A port the kernel just handed out on loopback (free unless someone races for it).
pub fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local_addr: {e}"))
}

/// One case: `producers` producers each sending 1 KiB messages one after another for
/// `duration` on a fresh topic, one consumer receiving (and acking, when reliable) them.
pub async fn run_case(
    broker: &BrokerProcess,
    topic: &str,
    reliable: bool,
    producers: usize,
    duration: Duration,
    drain_timeout: Duration,
) -> Result<Outcome, String> {
    let client = BrokerClient::builder()
        .service_url(broker.url.clone())
        .build()
        .await
        .map_err(|e| format!("client: {e}"))?;
    let mut made = Vec::with_capacity(producers);
    for i in 0..producers {
        let builder = client.producer(topic).name(format!("bench-p{i}"));
        let builder = if reliable {
            builder.reliable()
        } else {
            builder
        };
        made.push(
            builder
                .create()
                .await
                .map_err(|e| format!("producer: {e}"))?,
        );
    }
    let consumer = client
        .consumer(topic)
        .name("bench-c")
        .subscription("bench")
        .exclusive()
        .subscribe()
        .await
        .map_err(|e| format!("consumer: {e}"))?;

    let pid = broker.pid()?;
    let cpu_before = cpu_time(pid)?;
    let client_cpu_before = own_cpu_time()?;
    let sent = Arc::new(AtomicU64::new(0));
    let total = Arc::new(AtomicU64::new(u64::MAX));
    let receiving = tokio::spawn(receive(consumer, reliable, total.clone(), drain_timeout));

    let started = Instant::now();
    let deadline = started + duration;
    let mut sending = FuturesUnordered::new();
    for producer in made {
        let sent = sent.clone();
        sending.push(async move {
            let mut failure = None;
            while Instant::now() < deadline {
                match producer.send(stamped_payload()).await {
                    Ok(_) => {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        failure = Some(format!("send: {e}"));
                        break;
                    }
                }
            }
            producer.close().await;
            failure
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

/// Receives until every sent message has arrived (`total`, `u64::MAX` until the producers
/// are done), or nothing more arrives for `drain_timeout` after they are done (non-reliable
/// topics may drop), acking each one on reliable topics.
async fn receive(
    mut consumer: courier_broker::client::Consumer,
    reliable: bool,
    total: Arc<AtomicU64>,
    drain_timeout: Duration,
) -> Result<(u64, Vec<Duration>), String> {
    let mut latencies = Vec::new();
    let mut received = 0u64;
    let mut last = Instant::now();
    let mut acks = FuturesUnordered::new();
    while received < total.load(Ordering::Acquire) {
        let message = match tokio::time::timeout(POLL, consumer.next()).await {
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
        if let Some(age) = age_of(message.payload()) {
            latencies.push(age);
        }
        received += 1;
        if reliable {
            if acks.len() >= ACKS_IN_FLIGHT
                && let Some(Err(e)) = acks.next().await
            {
                return Err(format!("ack: {e}"));
            }
            acks.push(async move { message.ack().await });
        }
    }
    while let Some(ack) = acks.next().await {
        ack.map_err(|e| format!("ack: {e}"))?;
    }
    consumer.close().await;
    Ok((received, latencies))
}
