//! Broadcast fan-out through running `courier hub` nodes (started by benches/hub/run.sh).
//!
//! Connects `CLIENTS` WebSocket clients spread evenly over the nodes in `HUB_URLS`, measures
//! the hub processes' RSS before and after (memory per idle connection), then broadcasts
//! `FRAMES` frames through the first node's API at `RATE` per second. Each frame carries its
//! send time; every client records its receive time, giving delivery latency (API call start
//! to the client's read) and delivered frames per second.
//!
//! ```text
//! HUB_URLS=127.0.0.1:8081,127.0.0.1:8082 HUB_PIDS=123,456 CLIENTS=1000 FRAMES=200 RATE=20 \
//!   cargo bench --all-features --bench hub_fanout
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use courier::impls::http::HttpTransport;
use courier_traits::transport::{Method, Request, RequestTransport};
use futures::StreamExt;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` / `cargo bench -- --list`: nothing to run unattended
    }
    let Ok(urls) = std::env::var("HUB_URLS") else {
        eprintln!("hub_fanout: set HUB_URLS (run benches/hub/run.sh)");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(urls.split(',').map(str::to_owned).collect()));
}

async fn run(nodes: Vec<String>) {
    let clients: usize = env("CLIENTS", 1000);
    let frames: usize = env("FRAMES", 200);
    let rate: f64 = env("RATE", 20.0);
    let api_key: String = env("API_KEY", "bench".to_string());
    let pids: Vec<String> = std::env::var("HUB_PIDS")
        .unwrap_or_default()
        .split(',')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    let rss_before: u64 = pids.iter().map(|p| rss_kib(p)).sum();

    let start = Instant::now();
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(clients * frames)));
    let mut tasks = Vec::with_capacity(clients);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(clients);
    for i in 0..clients {
        let url = format!("ws://{}/ws?client_id=bench-{i}", nodes[i % nodes.len()]);
        let latencies = latencies.clone();
        let ready = ready_tx.clone();
        tasks.push(tokio::spawn(async move {
            let (socket, _) = match tokio_tungstenite::connect_async(url.as_str()).await {
                Ok(s) => s,
                Err(e) => panic!("client {i} cannot connect: {e}"),
            };
            let (_sink, mut stream) = socket.split();
            let mut mine = Vec::with_capacity(frames);
            let mut signalled = false;
            while let Some(Ok(message)) = stream.next().await {
                if let Message::Text(text) = message {
                    if !signalled {
                        signalled = true; // the welcome
                        let _ = ready.send(()).await;
                        continue;
                    }
                    if text.as_str() == "end" {
                        break;
                    }
                    if let Ok(sent_us) = text.as_str().parse::<u64>() {
                        let now_us = start.elapsed().as_micros() as u64;
                        mine.push(now_us.saturating_sub(sent_us));
                    }
                }
            }
            latencies.lock().await.extend(mine);
        }));
    }
    drop(ready_tx);
    for _ in 0..clients {
        ready_rx.recv().await.expect("every client connects");
    }
    let connect_time = start.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await; // let the presence directory settle
    let rss_after: u64 = pids.iter().map(|p| rss_kib(p)).sum();

    let api = HttpTransport::new(&format!("http://{}", nodes[0])).expect("url");
    let broadcast = |body: String| {
        let api = api.clone();
        let key = api_key.clone();
        async move {
            let request = Request::new(Method::Post, "/api/v1/broadcast")
                .header("Authorization", format!("Bearer {key}"))
                .body(body);
            let response = api.send(request).await.expect("broadcast");
            assert_eq!(response.status, 200, "broadcast refused");
        }
    };
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut tick = tokio::time::interval(interval);
    let send_start = Instant::now();
    for _ in 0..frames {
        tick.tick().await;
        broadcast(start.elapsed().as_micros().to_string()).await;
    }
    let send_time = send_start.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    broadcast("end".into()).await;
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    }
    let mut all = latencies.lock().await.clone();
    all.sort_unstable();
    let expected = clients * frames;
    println!(
        "nodes={} clients={clients} frames={frames} rate={rate}/s connect={:.1}s delivered={}/{} ({:.0} frames/s) latency_ms p50={:.2} p99={:.2} max={:.2} rss_before={}KiB rss_after={}KiB per_idle_conn={:.1}KiB",
        nodes.len(),
        connect_time.as_secs_f64(),
        all.len(),
        expected,
        all.len() as f64 / send_time.as_secs_f64(),
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        all.last().copied().unwrap_or(0) as f64 / 1000.0,
        rss_before,
        rss_after,
        (rss_after.saturating_sub(rss_before)) as f64 / clients as f64,
    );
}
