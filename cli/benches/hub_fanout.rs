//! Broadcast fan-out through running `courier hub` nodes (started by benches/hub/run.sh).
//!
//! Connects `CLIENTS` WebSocket clients spread evenly over the nodes in `HUB_URLS`, measures
//! the hub processes' RSS before and after (memory per idle connection), then broadcasts
//! `FRAMES` frames through the first node's API at `RATE` per second (open loop: a call is
//! made on time even while earlier ones are unanswered; `RATE=0`: back to back, each call
//! after the previous one answered). Each frame carries its send time; every client
//! records its receive time, giving delivery latency (API call start to the client's read) and
//! delivered frames per second (frames received over the time from the first send to the
//! last receipt).
//!
//! ```text
//! HUB_URLS=127.0.0.1:8081,127.0.0.1:8082 HUB_PIDS=123,456 CLIENTS=1000 FRAMES=200 RATE=20 \
//!   cargo bench -p courier-cli --bench hub_fanout
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use courier::impls::http::HttpTransport;
use courier::traits::transport::{Method, Request, RequestTransport};
use futures::StreamExt;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

#[allow(dead_code, reason = "each driver uses part of it")]
#[path = "hub/common.rs"]
mod common;

use common::{cpu_ticks, env, hub_pids, percentile, rss_kib, ticks_per_second};

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
    let pids = hub_pids();
    let rss_before: u64 = pids.iter().map(|p| rss_kib(p)).sum();

    let start = Instant::now();
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(clients * frames)));
    let last_receipt_us = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(clients);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(clients);
    // Handshakes in flight at once: more would overflow the listen backlog and measure SYN
    // retransmits instead of the server.
    let handshakes = Arc::new(tokio::sync::Semaphore::new(256));
    for i in 0..clients {
        let url = format!("ws://{}/ws?client_id=bench-{i}", nodes[i % nodes.len()]);
        let latencies = latencies.clone();
        let last_receipt_us = last_receipt_us.clone();
        let received = received.clone();
        let ready = ready_tx.clone();
        let handshakes = handshakes.clone();
        tasks.push(tokio::spawn(async move {
            let mut permit = Some(handshakes.acquire_owned().await.expect("never closed"));
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
                        permit.take();
                        let _ = ready.send(()).await;
                        continue;
                    }
                    if text.as_str() == "end" {
                        break;
                    }
                    if let Ok(sent_us) = text.as_str().parse::<u64>() {
                        let now_us = start.elapsed().as_micros() as u64;
                        mine.push(now_us.saturating_sub(sent_us));
                        last_receipt_us.fetch_max(now_us, Ordering::Relaxed);
                        received.fetch_add(1, Ordering::Relaxed);
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
    // One API call; returns how long it took (µs).
    let broadcast = |body: String| {
        let api = api.clone();
        let key = api_key.clone();
        async move {
            let call = Instant::now();
            let request = Request::new(Method::Post, "/api/v1/broadcast")
                .header("Authorization", format!("Bearer {key}"))
                .body(body);
            let response = api.send(request).await.expect("broadcast");
            assert_eq!(response.status, 200, "broadcast refused");
            call.elapsed().as_micros() as u64
        }
    };
    let cpu_before: u64 = pids.iter().map(|p| cpu_ticks(p)).sum();
    let first_send_us = start.elapsed().as_micros() as u64;
    let mut api_calls = Vec::with_capacity(frames);
    if rate > 0.0 {
        // Open loop: a call every 1/rate s whatever the previous ones are doing, so a slow
        // answer does not lower the offered load.
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..frames {
            tick.tick().await;
            calls.spawn(broadcast(start.elapsed().as_micros().to_string()));
        }
        while let Some(took) = calls.join_next().await {
            api_calls.push(took.expect("broadcast call"));
        }
    } else {
        // Closed loop: each call after the previous one answered.
        for _ in 0..frames {
            api_calls.push(broadcast(start.elapsed().as_micros().to_string()).await);
        }
    }
    api_calls.sort_unstable();
    // Until every frame arrived (or 30 s): the CPU figure then covers the whole delivery.
    let expected = (clients * frames) as u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu_after: u64 = pids.iter().map(|p| cpu_ticks(p)).sum();
    broadcast("end".into()).await;
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    }
    let mut all = latencies.lock().await.clone();
    all.sort_unstable();
    let span_s = (last_receipt_us
        .load(Ordering::Relaxed)
        .saturating_sub(first_send_us)) as f64
        / 1e6;
    // Server CPU (all hub processes) per delivered frame, from the first send until the
    // last frame arrived: less distorted by the shared cores than frames/s.
    let cpu_us_per_frame = (cpu_after.saturating_sub(cpu_before)) as f64 / ticks_per_second() * 1e6
        / (all.len().max(1) as f64);
    let rate_label = if rate > 0.0 {
        format!("{rate}/s")
    } else {
        "max".to_string()
    };
    println!(
        "nodes={} clients={clients} frames={frames} rate={rate_label} connect={:.1}s delivered={}/{} ({:.0} frames/s) server_cpu_us/frame={cpu_us_per_frame:.2} latency_ms p50={:.2} p99={:.2} max={:.2} api_call_ms p50={:.2} max={:.2} rss_before={}KiB rss_after={}KiB per_idle_conn={:.1}KiB",
        nodes.len(),
        connect_time.as_secs_f64(),
        all.len(),
        expected,
        all.len() as f64 / span_s.max(1e-9),
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        all.last().copied().unwrap_or(0) as f64 / 1000.0,
        percentile(&api_calls, 0.50),
        api_calls.last().copied().unwrap_or(0) as f64 / 1000.0,
        rss_before,
        rss_after,
        (rss_after.saturating_sub(rss_before)) as f64 / clients as f64,
    );
}
