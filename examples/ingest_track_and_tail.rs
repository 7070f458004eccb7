//! Track events through the SDK into an ingestion server, and tail them from the app's stream
//! `ingest/<app>` with the Durable Streams client.
//!
//! ```text
//! cargo run --features ingest-server,streams --example ingest_track_and_tail
//! ```
//!
//! Everything runs in this process over the in-memory storage: an `IngestServer` on one port
//! and a `StreamsServer` over the same storage on another, as `courier ingest` and
//! `courier streams` do over one shared storage.

use std::sync::Arc;
use std::time::Duration;

use courier::StreamStorage;
use courier::impls::memory::MemoryStreamStorage;
use courier::ingest::sdk::{Event, IngestClient};
use courier::ingest::server::{
    ApiKeyChecker, IngestConfig, IngestServer, KeyDigest, MemoryKeyStore,
};
use courier::streams::client::{LiveMode, StreamsClient};
use courier::streams::server::{ServerConfig, StreamsServer};
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

const APP: &str = "shop";
/// A demo key (64 lowercase hex characters); real keys are 32 random bytes. The server keeps
/// only its SHA-256.
const API_KEY: &str = "7a3c0f5e9b1d2a4c6e8f0a1b3c5d7e9f1a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d";
/// Events per round; the tail starts between the two rounds.
const ROUND: i64 = 50;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let storage: Arc<dyn StreamStorage> = Arc::new(MemoryStreamStorage::new());
    let (stop, stopped) = watch::channel(false);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };

    // The ingestion server, with one key for APP (the keys file format of `courier ingest`).
    let keys = MemoryKeyStore::from_keys_json(&format!(
        r#"[{{"app_id":"{APP}","name":"demo","sha256":"{}"}}]"#,
        KeyDigest::of_key(API_KEY).to_hex()
    ))?;
    let ingest = IngestServer::new(
        Arc::clone(&storage),
        ApiKeyChecker::new(Arc::new(keys)),
        IngestConfig::default(),
    )?;
    let ingest_listener = TcpListener::bind("127.0.0.1:0").await?;
    let ingest_url = format!("http://{}", ingest_listener.local_addr()?);
    let ingest_task = tokio::spawn(ingest.serve(ingest_listener, until_stopped()));

    // The Durable Streams server over the same storage, for reading.
    let streams_listener = TcpListener::bind("127.0.0.1:0").await?;
    let streams_url = format!("http://{}", streams_listener.local_addr()?);
    let streams = StreamsServer::new(Arc::clone(&storage), ServerConfig::default());
    let streams_task = tokio::spawn(streams.serve(streams_listener, until_stopped()));

    // Track the first round: `track` only queues; `flush` waits until the server stored it.
    let client = IngestClient::builder(&ingest_url, API_KEY, APP).build()?;
    for seq in 0..ROUND {
        client.track(Event::custom("page_view").param("seq", seq).user_id("u1"))?;
    }
    client.flush().await?;

    // Tail the app's stream from its start: catch-up first, then live long-polls.
    let reader = StreamsClient::http(&streams_url)?;
    let mut tail = reader.subscribe(&format!("ingest/{APP}"), None, LiveMode::LongPoll);
    let follower = tokio::spawn(async move {
        let mut seqs = Vec::new();
        while seqs.len() < 2 * ROUND as usize {
            let Some(chunk) = tail.next().await else {
                break;
            };
            let records: Vec<serde_json::Value> = serde_json::from_slice(&chunk?.data)?;
            for record in &records {
                seqs.push(record["custom_event"]["int_params"]["seq"].as_i64());
            }
            println!("tail: {} event(s), {} so far", records.len(), seqs.len());
        }
        Ok::<_, Error>(seqs)
    });

    // The second round arrives while the tail is following.
    for seq in ROUND..2 * ROUND {
        client.track(Event::custom("page_view").param("seq", seq).user_id("u2"))?;
    }
    let report = client.close().await;
    let seqs = tokio::time::timeout(Duration::from_secs(10), follower).await???;

    let in_order = seqs.iter().copied().eq((0..2 * ROUND).map(Some));
    println!(
        "tracked {}, delivered {}, tailed {} from ingest/{APP} ({})",
        2 * ROUND,
        report.delivered,
        seqs.len(),
        if in_order {
            "each once, in order"
        } else {
            "NOT each once in order"
        }
    );
    let _ = stop.send(true);
    ingest_task.await??;
    streams_task.await??;
    if !in_order {
        return Err("the tail did not read every event once".into());
    }
    Ok(())
}
