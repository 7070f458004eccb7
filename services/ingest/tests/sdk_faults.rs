//! The SDK side of I17: 10 000 events through a server that fails at random (seeded): 503s,
//! resets before and after it stored the batch, hangs past the timeout, 429 with
//! `Retry-After`. The stand-in stores events by idempotency key, as the real server will, so a
//! retry of a batch it had already stored adds nothing. Every event must end up stored once,
//! in order, and counted as sent.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ScriptedServer, Step, builder, numbered};

/// A small seeded generator (SplitMix64): the same faults on every run.
struct Faults(u64);

impl Faults {
    fn next_percent(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % 100
    }
}

#[derive(Default)]
struct Store {
    by_key: HashMap<String, i64>,
    order: Vec<i64>,
}

impl Store {
    fn commit(&mut self, seen: &common::Seen) {
        for (key, seq) in seen.keys().into_iter().zip(seen.seqs()) {
            if self.by_key.insert(key, seq).is_none() {
                self.order.push(seq);
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn i17_sdk_side_10000_events_through_random_faults_are_stored_once_in_order() {
    const EVENTS: i64 = 10_000;
    let server = ScriptedServer::new([]);
    let store = Arc::new(Mutex::new(Store::default()));
    let faults = Mutex::new(Faults(17));
    let rule_store = Arc::clone(&store);
    server.set_rule(move |seen| {
        let roll = faults.lock().expect("lock").next_percent();
        let mut store = rule_store.lock().expect("lock");
        match roll {
            0..15 => Some(Step::status(503)),
            15..25 => Some(Step::reset()),
            25..35 => {
                // Stored, but the answer is lost.
                store.commit(seen);
                Some(Step::reset())
            }
            35..40 => Some(Step::Hang),
            40..45 => Some(Step::retry_after(429, 1)),
            _ => {
                store.commit(seen);
                None
            }
        }
    });
    let client = builder(&server)
        .batch_size(50)
        .max_retries(20)
        .request_timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    for seq in 0..EVENTS {
        // The queue (10 000) holds them all; no event is dropped.
        client.track(numbered(seq)).expect("tracked");
    }
    client.flush().await.expect("flushed");
    let report = client.close().await;
    let stats = client.stats();
    assert_eq!(
        (report.delivered, report.failed, report.unsent),
        (EVENTS as u64, 0, 0)
    );
    assert!(stats.retries > 0);
    let store = store.lock().expect("lock");
    assert_eq!(
        store.order,
        (0..EVENTS).collect::<Vec<_>>(),
        "each once, in order"
    );
    assert!(
        server.requests() > (EVENTS / 50) as usize,
        "faults caused retries: {} requests",
        server.requests()
    );
    eprintln!(
        "I17 (SDK side): {} requests for {} batches, {} retries",
        server.requests(),
        EVENTS / 50,
        stats.retries
    );
}
