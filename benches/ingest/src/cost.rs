//! `ingest-bench cost BATCH BATCHES`: the server's work per event without the network, for a
//! deterministic count of instructions (`valgrind --tool=callgrind`) or the process's CPU.
//!
//! The same `IngestServer` service as `serve` on the memory storage, called in this process
//! (`tower::ServiceExt::oneshot`, no socket, no HTTP parsing) with `BATCHES` bodies of `BATCH`
//! of the bench's 200 B events, built before the measured loop. Run it with two batch counts
//! and take the difference: what stays is the per-event cost of routing, the API key check,
//! body decoding, parsing and validation, the keyed append and the 200 body, which is what
//! changes to the server's hot path move. The socket and HTTP/1.1 work of the real run are
//! not in it.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use courier::impls::memory::MemoryStreamStorage;
use courier_ingest::server::{
    ApiKeyChecker, IngestConfig, IngestServer, KeyDigest, KeyRecord, MemoryKeyStore,
};
use tower::ServiceExt;

use crate::events::EventWriter;
use crate::serve::RATE_LIMIT;

const APP: &str = "bench-cost";
/// Any 64 lowercase hex digits are a well-formed key.
const KEY: &str = "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0";

/// Posts `batches` bodies of `batch` events and prints the process's CPU per event. With
/// `COST_SHAPES=k` the events of a batch take k shapes in turn (the key of their one string
/// parameter is `p0` .. `p{k-1}`): a batch whose events do not all look alike.
pub(crate) async fn cost(batch: usize, batches: usize) -> Result<(), String> {
    let keys = MemoryKeyStore::new();
    keys.insert(KeyRecord {
        id: "bench-cost".to_owned(),
        app_id: APP.to_owned(),
        name: "bench".to_owned(),
        digest: KeyDigest::of_key(KEY),
        revoked: false,
    });
    let server = IngestServer::new(
        Arc::new(MemoryStreamStorage::new()),
        ApiKeyChecker::new(Arc::new(keys)),
        IngestConfig::default().with_rate_limit(RATE_LIMIT, RATE_LIMIT),
    )
    .map_err(|e| format!("ingest server: {e}"))?;
    // What `serve` runs: the batch endpoint answered beside the router.
    let service = server.service();
    let writer = EventWriter::new(APP)?;
    let shapes = match std::env::var("COST_SHAPES") {
        Ok(text) => text
            .parse()
            .map_err(|e| format!("COST_SHAPES={text:?}: {e}"))?,
        Err(_) => 1,
    };
    let bodies: Vec<String> = (0..batches)
        .map(|i| of_shapes(writer.batch((i * batch) as u64, batch), shapes))
        .collect();
    let started = Instant::now();
    let cpu_before = crate::proc_cpu::cpu_time(std::process::id())?;
    for body in bodies {
        let request = Request::post("/v1/events/batch")
            .header("content-type", "application/json")
            .header("x-api-key", KEY)
            .body(Body::from(body))
            .map_err(|e| format!("request: {e}"))?;
        let response = service
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| format!("service: {e}"))?;
        if response.status() != StatusCode::OK {
            return Err(format!("status {}", response.status()));
        }
        axum::body::to_bytes(response.into_body(), 64 << 20)
            .await
            .map_err(|e| format!("response body: {e}"))?;
    }
    let cpu = crate::proc_cpu::cpu_time(std::process::id())? - cpu_before;
    let events = (batch * batches) as f64;
    println!(
        "batch={batch} batches={batches} events={events} wall={:?} cpu_us_per_event={:.2}",
        started.elapsed(),
        cpu.as_secs_f64() * 1e6 / events
    );
    Ok(())
}

/// `body` with the string parameter of its events named `p0`, `p1`, .. in turn, `shapes` names
/// in all (1: unchanged).
fn of_shapes(body: String, shapes: usize) -> String {
    if shapes <= 1 {
        return body;
    }
    let mut out = String::with_capacity(body.len() + body.len() / 64);
    for (n, part) in body.split(r#"{"p":""#).enumerate() {
        if n > 0 {
            out.push_str(&format!(r#"{{"p{}":""#, (n - 1) % shapes));
        }
        out.push_str(part);
    }
    out
}
