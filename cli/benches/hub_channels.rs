//! Channel fan-out and recovery through running hub nodes (started by benches/hub/channels.sh).
//!
//! `MODE=fanout`: connects `CHANNELS` × `SUBSCRIBERS` WebSocket clients, each subscribed to
//! one channel `bench.N` (a channel's subscribers spread evenly over the nodes in `HUB_URLS`),
//! then publishes `PUBS` publications through the first node's channel API
//! (`POST /api/v1/channels/bench.N/publish`, channels in turn), at `RATE` per second open loop
//! (a call is made on time even while earlier ones are unanswered) or, with `RATE=0`, closed
//! loop from `CALLERS` concurrent callers (each call after its previous one answered). Each
//! publication carries its send time; latency is from the start of the API call to the
//! subscriber's read; frames/s = frames received / (last receipt − first send).
//!
//! `MODE=recovery`: one client subscribes to the history channel `rec.bench` on the first node
//! and disconnects; `MISSED` publications are then made to it one after another through the
//! first node's API; the client reconnects to the last node with the offset and epoch it had
//! and subscribes with `since`. Reported: the time from the reconnect until all `MISSED`
//! arrived, and whether they arrived exactly once and in order.
//!
//! ```text
//! MODE=fanout HUB_URLS=127.0.0.1:8081,127.0.0.1:8082 HUB_PIDS=123,456 CHANNELS=1000 \
//!   SUBSCRIBERS=10 PUBS=10000 RATE=2000 cargo bench -p courier-cli --bench hub_channels
//! ```

#[allow(dead_code, reason = "each driver uses part of it")]
#[path = "hub/common.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{cpu_seconds, env, hub_pids, percentile};
use courier::impls::http::HttpTransport;
use courier::traits::transport::{Method, Request, RequestTransport};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long the driver waits for anything before calling the case failed.
const WAIT: Duration = Duration::from_secs(30);

/// A server message as far as the driver reads it: a publication's data is a number here.
#[derive(Deserialize)]
struct Incoming<'a> {
    message_type: &'a str,
    #[serde(default)]
    data: Option<PublicationBody>,
}

#[derive(Deserialize)]
struct PublicationBody {
    #[serde(default)]
    data: Option<Value>,
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` / `cargo bench -- --list`: nothing to run unattended
    }
    let Ok(urls) = std::env::var("HUB_URLS") else {
        eprintln!("hub_channels: set HUB_URLS (run benches/hub/channels.sh)");
        return;
    };
    let nodes: Vec<String> = urls.split(',').map(str::to_owned).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match env("MODE", "fanout".to_string()).as_str() {
        "fanout" => runtime.block_on(fanout(nodes)),
        "recovery" => runtime.block_on(recovery(nodes)),
        other => eprintln!("hub_channels: unknown MODE {other:?} (fanout | recovery)"),
    }
}

/// Connects and reads the welcome.
async fn connect(node: &str, client_id: &str) -> Socket {
    let url = format!("ws://{node}/ws?client_id={client_id}");
    let (mut socket, _) = match tokio_tungstenite::connect_async(url.as_str()).await {
        Ok(s) => s,
        Err(e) => panic!("{client_id} cannot connect to {node}: {e}"),
    };
    let welcome = next_json(&mut socket).await;
    assert_eq!(welcome["message_type"], "welcome", "{welcome}");
    socket
}

/// The next text message, as JSON.
async fn next_json(socket: &mut Socket) -> Value {
    loop {
        match tokio::time::timeout(WAIT, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                return serde_json::from_str(&text).expect("the server sends JSON");
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// Sends `subscribe` and returns the `subscribed` reply's data (anything else is a failure).
async fn subscribe(socket: &mut Socket, data: Value) -> Value {
    let request = json!({"message_id": 1, "message_type": "subscribe", "data": data});
    socket
        .send(Message::Text(request.to_string().into()))
        .await
        .expect("sends subscribe");
    loop {
        let reply = next_json(socket).await;
        if reply["message_id"] == 1 {
            assert_eq!(reply["message_type"], "subscribed", "{reply}");
            return reply["data"].clone();
        }
    }
}

/// Publishes `body` to `channel` through the API; returns how long the call took (µs).
async fn publish(api: &HttpTransport, channel: &str, body: String) -> u64 {
    let call = Instant::now();
    let request = Request::new(Method::Post, format!("/api/v1/channels/{channel}/publish"))
        .header("Authorization", "Bearer bench")
        .body(body);
    let response = api.send(request).await.expect("publish call");
    assert_eq!(response.status, 200, "publish refused");
    call.elapsed().as_micros() as u64
}

async fn fanout(nodes: Vec<String>) {
    let channels: usize = env("CHANNELS", 1000);
    let subscribers: usize = env("SUBSCRIBERS", 10);
    let pubs: usize = env("PUBS", 10_000);
    let rate: f64 = env("RATE", 2000.0);
    let callers: usize = env("CALLERS", 8);
    let clients = channels * subscribers;
    let pids = hub_pids();

    let start = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let last_receipt_us = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(clients);
    // Handshakes in flight at once: more would overflow the listen backlog and measure SYN
    // retransmits instead of the server.
    let handshakes = Arc::new(tokio::sync::Semaphore::new(256));
    let mut tasks = Vec::with_capacity(clients);
    for i in 0..clients {
        // Subscribers of one channel alternate between the nodes.
        let node = nodes[(i / channels) % nodes.len()].clone();
        let channel = format!("bench.{}", i % channels);
        let (received, last_receipt_us) = (received.clone(), last_receipt_us.clone());
        let (ready, handshakes, stop) = (ready_tx.clone(), handshakes.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let permit = handshakes.acquire_owned().await.expect("never closed");
            let mut socket = connect(&node, &format!("bench-{i}")).await;
            subscribe(&mut socket, json!({ "channel": channel })).await;
            drop(permit);
            let _ = ready.send(()).await;
            let mut latencies = Vec::with_capacity(pubs / channels + 1);
            loop {
                let message = tokio::select! {
                    () = stop.cancelled() => break,
                    message = socket.next() => message,
                };
                let Some(Ok(Message::Text(text))) = message else {
                    if matches!(message, Some(Ok(_))) {
                        continue;
                    }
                    break;
                };
                let Ok(incoming) = serde_json::from_str::<Incoming>(&text) else {
                    continue;
                };
                let sent = incoming.data.and_then(|d| d.data?.as_u64());
                if let ("publication", Some(sent_us)) = (incoming.message_type, sent) {
                    let now_us = start.elapsed().as_micros() as u64;
                    latencies.push(now_us.saturating_sub(sent_us));
                    last_receipt_us.fetch_max(now_us, Ordering::Relaxed);
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    drop(ready_tx);
    for _ in 0..clients {
        ready_rx.recv().await.expect("every client subscribes");
    }
    let connect_time = start.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await; // let the last subscriptions settle

    let api = HttpTransport::new(&format!("http://{}", nodes[0])).expect("url");
    let cpu_before = cpu_seconds(&pids);
    let first_send_us = start.elapsed().as_micros() as u64;
    let mut api_calls = Vec::with_capacity(pubs);
    let mut calls = tokio::task::JoinSet::new();
    if rate > 0.0 {
        // Open loop: calls fall due at `rate` per second whatever earlier ones are doing; a
        // tick every 1 ms makes those due since the last one.
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        let paced = Instant::now();
        let mut made = 0;
        while made < pubs {
            tick.tick().await;
            let due = ((paced.elapsed().as_secs_f64() * rate) as usize + 1).min(pubs);
            for k in made..due {
                let (api, channel) = (api.clone(), format!("bench.{}", k % channels));
                let body = start.elapsed().as_micros().to_string();
                calls.spawn(async move { vec![publish(&api, &channel, body).await] });
            }
            made = due;
        }
    } else {
        // Closed loop: `callers` callers, caller c publishing k = c, c + callers, ...
        for c in 0..callers.min(pubs) {
            let api = api.clone();
            calls.spawn(async move {
                let mut took = Vec::new();
                for k in (c..pubs).step_by(callers) {
                    let body = start.elapsed().as_micros().to_string();
                    took.push(publish(&api, &format!("bench.{}", k % channels), body).await);
                }
                took
            });
        }
    }
    while let Some(took) = calls.join_next().await {
        api_calls.extend(took.expect("publish calls"));
    }
    // Until every frame arrived (or the wait ran out): the CPU figure covers the delivery.
    let expected = (pubs * subscribers) as u64;
    let deadline = Instant::now() + WAIT;
    while received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu = cpu_seconds(&pids) - cpu_before;
    stop.cancel();
    let mut all = Vec::with_capacity(expected as usize);
    for task in tasks {
        if let Ok(Ok(latencies)) = tokio::time::timeout(WAIT, task).await {
            all.extend(latencies);
        }
    }
    all.sort_unstable();
    api_calls.sort_unstable();
    let span_s = (last_receipt_us
        .load(Ordering::Relaxed)
        .saturating_sub(first_send_us)) as f64
        / 1e6;
    let rate_label = if rate > 0.0 {
        format!("{rate}/s")
    } else {
        format!("max/{callers}")
    };
    println!(
        "nodes={} channels={channels} subscribers={subscribers} pubs={pubs} rate={rate_label} connect={:.1}s delivered={}/{expected} ({:.0} frames/s) server_cpu_us/frame={:.2} latency_ms p50={:.2} p99={:.2} max={:.2} api_call_ms p50={:.2} p99={:.2}",
        nodes.len(),
        connect_time.as_secs_f64(),
        all.len(),
        all.len() as f64 / span_s.max(1e-9),
        cpu * 1e6 / all.len().max(1) as f64,
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        all.last().copied().unwrap_or(0) as f64 / 1000.0,
        percentile(&api_calls, 0.50),
        percentile(&api_calls, 0.99),
    );
}

async fn recovery(nodes: Vec<String>) {
    let missed: u64 = env("MISSED", 10_000);
    let channel = "rec.bench";
    let pids = hub_pids();
    let first = &nodes[0];
    let last = &nodes[nodes.len() - 1];

    let mut socket = connect(first, "bench-recovery").await;
    let position = subscribe(&mut socket, json!({ "channel": channel })).await;
    let since = json!({ "offset": position["offset"], "epoch": position["epoch"] });
    let _ = socket.close(None).await;
    drop(socket);

    let api = HttpTransport::new(&format!("http://{first}")).expect("url");
    let published = Instant::now();
    for j in 0..missed {
        publish(&api, channel, j.to_string()).await;
    }
    let publish_s = published.elapsed().as_secs_f64();

    let cpu_before = cpu_seconds(&pids);
    let reconnect = Instant::now();
    let mut socket = connect(last, "bench-recovery").await;
    let reply = subscribe(&mut socket, json!({ "channel": channel, "since": since })).await;
    let reply_ms = reconnect.elapsed().as_secs_f64() * 1e3;
    let mut got: Vec<u64> = reply["publications"]
        .as_array()
        .map(|list| list.iter().filter_map(|p| p["data"].as_u64()).collect())
        .unwrap_or_default();
    // Anything not in the reply follows it as live publications.
    let deadline = Instant::now() + WAIT;
    while (got.len() as u64) < missed && Instant::now() < deadline {
        let message = next_json(&mut socket).await;
        if message["message_type"] == "publication"
            && let Some(j) = message["data"]["data"].as_u64()
        {
            got.push(j);
        }
    }
    let all_ms = reconnect.elapsed().as_secs_f64() * 1e3;
    let cpu_ms = (cpu_seconds(&pids) - cpu_before) * 1e3;
    let once_in_order = got.iter().copied().eq(0..missed);
    println!(
        "nodes={} missed={missed} publish={:.0}/s recovered={} resync={} received={} exactly_once_in_order={} reply_ms={reply_ms:.1} all_received_ms={all_ms:.1} server_cpu_ms={cpu_ms:.1}",
        nodes.len(),
        missed as f64 / publish_s,
        reply["recovered"],
        reply["resync"],
        got.len(),
        if once_in_order { "yes" } else { "NO" },
    );
}
