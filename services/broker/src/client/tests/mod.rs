//! B11: the client against a scripted broker (real tonic, in-process): retries and their
//! backoff on tokio's paused clock, lookups, re-registration, error items, task ownership.

mod auth;
mod consumer;
mod producer;
mod scripted;

use std::time::Duration;

use courier_traits::retry::RetryPolicy;

use super::BrokerClient;
use scripted::{ScriptedBroker, URL};

/// A client of `broker` under `policy`, health-checking every 50 ms.
async fn client(broker: &ScriptedBroker, policy: impl RetryPolicy + 'static) -> BrokerClient {
    BrokerClient::builder()
        .service_url(URL)
        .in_process(broker.network.clone())
        .retry(policy)
        .health_interval(Duration::from_millis(50))
        .build()
        .await
        .expect("client")
}

/// Waits (on the paused clock, at most 10 s of it) until `done` holds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..1_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}
