//! Produce to a stream, then tail it: an idempotent producer writes JSON events while a
//! subscriber follows the stream live (catch-up, then long-poll), until the stream is closed.
//!
//! ```text
//! cargo run --features streams --example streams_server      # or: courier streams
//! cargo run --features streams --example streams_produce_and_tail [BASE_URL]
//!                                        # BASE_URL defaults to http://127.0.0.1:4437
//! ```

use courier::streams::client::{ClientError, CreateOptions, LiveMode, StreamsClient};
use futures::StreamExt;

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let base = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:4437".into());
    let client = StreamsClient::http(&base)?;
    let stream = format!("example-{}", std::process::id());
    client
        .create(&stream, CreateOptions::content_type("application/json"))
        .await?;

    // Tail from the start in the background.
    let mut tail = client.subscribe(&stream, None, LiveMode::LongPoll);
    let follower = tokio::spawn(async move {
        let mut received = 0;
        while let Some(chunk) = tail.next().await {
            let chunk = chunk?;
            let events: Vec<serde_json::Value> = serde_json::from_slice(&chunk.data)
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            received += events.len();
            println!(
                "tail: {} event(s), next offset {}",
                events.len(),
                chunk.next_offset
            );
        }
        Ok::<usize, ClientError>(received)
    });

    // Produce 100 events; concurrent appends are batched, retries are deduplicated.
    let producer = client
        .producer(&stream, "application/json")
        .idempotent("example-producer", 0)
        .build();
    let appends = (0..100).map(|i| producer.append(format!(r#"{{"event":{i}}}"#)));
    for ack in futures::future::join_all(appends).await {
        ack?;
    }
    producer.close().await;
    client.close(&stream).await?;

    let received = follower
        .await
        .map_err(|e| ClientError::Protocol(e.to_string()))??;
    println!("tail saw {received} events; the stream is closed");
    client.delete(&stream).await
}
