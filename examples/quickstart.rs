//! The main job on the embedded default: composes the in-memory backends.
//!
//! A producer appends orders to a durable-style stream under an idempotent producer stamp
//! (retrying once to show the duplicate is dropped), a tailer follows the stream with
//! `wait` + `read`, and every order is also fanned out on a bus to two subscribers.
//!
//! Run: `cargo run --example quickstart`

use std::time::Duration;

use courier::bus::{SubscribeFrom, Topic};
use courier::impls::memory::{MemoryBus, MemoryStreamStorage};
use courier::impls::retry::{ExponentialBackoff, Retry, TracingObserver};
use courier::storage::{
    AppendRequest, ProducerStamp, ReadLimits, StreamConfig, StreamName, WaitOutcome,
};
use courier::{MessageBus, StreamStorage};
use futures::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = MemoryStreamStorage::new();
    let bus = MemoryBus::new();
    let stream = StreamName::new("orders")?;
    let topic = Topic::new("orders/new")?;
    store
        .create(
            &stream,
            StreamConfig::with_content_type("application/json"),
            vec![],
        )
        .await?;

    // Two subscribers on the bus, registered before anything is published.
    let mut billing = bus.subscribe(&topic, SubscribeFrom::Live).await?;
    let mut shipping = bus.subscribe(&topic, SubscribeFrom::Live).await?;

    // A tailer that follows the stream until it is closed, from the offset it had before any
    // append (read here, not in the task: the task may first run after every append).
    let tail_store = store.clone();
    let tail_name = stream.clone();
    let mut from = store.head(&stream).await?.next_offset;
    let tailer = tokio::spawn(async move {
        let mut seen = Vec::new();
        loop {
            let batch = tail_store
                .read(&tail_name, Some(from.clone()), ReadLimits::default())
                .await?;
            seen.extend(
                batch
                    .records
                    .iter()
                    .map(|r| String::from_utf8_lossy(&r.data).into_owned()),
            );
            from = batch.next_offset;
            if batch.closed {
                return Ok::<_, courier::StorageError>(seen);
            }
            if tail_store
                .wait(&tail_name, &from, Duration::from_secs(5))
                .await?
                == WaitOutcome::TimedOut
            {
                println!("tailer: still waiting...");
            }
        }
    });

    let policy = ExponentialBackoff::new(Duration::from_millis(20)).max_attempts(5);
    for seq in 0..5u64 {
        let order = format!(r#"{{"order":{seq},"item":"widget"}}"#);
        let stamp = ProducerStamp::new("shop-1", 0, seq)?;
        let mut request = AppendRequest::record(order.clone()).with_producer(stamp);
        if seq == 4 {
            request = request.and_close();
        }
        let outcome = Retry::new(&policy)
            .observer(std::sync::Arc::new(TracingObserver))
            .run(|_| store.append(&stream, request.clone()))
            .await
            .map_err(|e| format!("append failed: {e}"))?;
        // A retry of the same stamp (as after a lost response) is recognised, not duplicated.
        let again = store.append(&stream, request).await?;
        assert!(again.duplicate);
        bus.publish(&topic, order.into()).await?;
        println!(
            "appended order {seq} -> next offset {}",
            outcome.next_offset
        );
    }

    let seen = tailer.await??;
    println!("tailer saw {} orders, stream closed", seen.len());
    for (name, sub) in [("billing", &mut billing), ("shipping", &mut shipping)] {
        let mut got = 0;
        while got < 5 {
            sub.next().await.ok_or("bus closed early")??;
            got += 1;
        }
        println!("{name} received {got} orders over the bus");
    }
    bus.close().await?;
    Ok(())
}
