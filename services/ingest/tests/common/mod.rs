//! A scripted stand-in for the ingestion server, for the SDK's tests.
//!
//! The server (`courier ingest`) does not exist yet, so these tests answer the SDK's requests
//! from a script: each request takes the next step (a status with headers, a transport error,
//! or no answer at all), and once the script is empty every request is accepted with the
//! protojson response the spec defines. Every request is recorded with the (paused) tokio time
//! it arrived at.

#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use courier_ingest::sdk::{DeliveryError, IngestClient, IngestClientBuilder};
use courier_traits::transport::{
    Request, RequestTransport, Response, ResponseBody, TransportError, header,
};
use serde_json::{Value, json};
use tokio::time::Instant;

/// What the server does with one request.
pub enum Step {
    /// Answers this status with these headers and body.
    Status(u16, Vec<(String, String)>, String),
    /// The transport fails with this error (connection reset, refused).
    Fail(fn() -> TransportError),
    /// Never answers (a stalled or dead server).
    Hang,
    /// Accepts the batch, rejecting the events at these indices.
    AcceptRejecting(Vec<usize>),
}

impl Step {
    pub fn status(status: u16) -> Step {
        Step::Status(
            status,
            Vec::new(),
            format!(r#"{{"message":"status {status}"}}"#),
        )
    }

    pub fn retry_after(status: u16, seconds: u64) -> Step {
        Step::Status(
            status,
            vec![("Retry-After".into(), seconds.to_string())],
            String::new(),
        )
    }

    pub fn reset() -> Step {
        Step::Fail(|| {
            TransportError::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset by peer",
            ))
        })
    }
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub at: Instant,
    pub headers: Vec<(String, String)>,
    /// The body after any gzip was undone.
    pub body: Vec<u8>,
    /// `body["events"]`.
    pub events: Vec<Value>,
}

impl Seen {
    pub fn keys(&self) -> Vec<String> {
        self.events
            .iter()
            .map(|e| e["idempotency_key"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// `custom_event.int_params.seq` of each event.
    pub fn seqs(&self) -> Vec<i64> {
        self.events
            .iter()
            .map(|e| {
                e["custom_event"]["int_params"]["seq"]
                    .as_i64()
                    .unwrap_or(-1)
            })
            .collect()
    }
}

type Rule = Box<dyn Fn(&Seen) -> Option<Step> + Send + Sync>;

#[derive(Default)]
pub struct ScriptedServer {
    script: Mutex<VecDeque<Step>>,
    /// Decides before the script (e.g. 413 for batches over a size).
    rule: Mutex<Option<Rule>>,
    seen: Mutex<Vec<Seen>>,
}

impl ScriptedServer {
    pub fn new(steps: impl IntoIterator<Item = Step>) -> Arc<ScriptedServer> {
        Arc::new(ScriptedServer {
            script: Mutex::new(steps.into_iter().collect()),
            ..ScriptedServer::default()
        })
    }

    /// Every request hangs.
    pub fn dead() -> Arc<ScriptedServer> {
        let server = ScriptedServer::new([]);
        server.set_rule(|_| Some(Step::Hang));
        server
    }

    pub fn set_rule(&self, rule: impl Fn(&Seen) -> Option<Step> + Send + Sync + 'static) {
        *self.rule.lock().expect("lock") = Some(Box::new(rule));
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// Events of every request the server accepted (answered 2xx), in arrival order.
    pub fn requests(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }
}

fn decoded_body(request: &Request) -> Vec<u8> {
    if header(&request.headers, "content-encoding") == Some("gzip") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&request.body[..])
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    } else {
        request.body.to_vec()
    }
}

fn accept(seen: &Seen, rejected: &[usize]) -> Response {
    let results: Vec<Value> = (0..seen.events.len())
        .map(|i| {
            if rejected.contains(&i) {
                json!({"index": i, "status": "rejected", "error": "device_id: value length must be at least 1 characters"})
            } else {
                json!({"index": i, "eventId": format!("evt-{i}"), "status": "accepted"})
            }
        })
        .collect();
    let body = json!({
        "acceptedCount": seen.events.len() - rejected.len(),
        "rejectedCount": rejected.len(),
        "results": results,
    });
    Response {
        status: 200,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: ResponseBody::Full(body.to_string().into()),
    }
}

#[async_trait::async_trait]
impl RequestTransport for ScriptedServer {
    async fn send(&self, request: Request) -> Result<Response, TransportError> {
        let body = decoded_body(&request);
        let parsed: Value = serde_json::from_slice(&body).expect("the SDK sends JSON");
        let seen = Seen {
            at: Instant::now(),
            headers: request.headers.clone(),
            events: parsed["events"].as_array().cloned().unwrap_or_default(),
            body,
        };
        self.seen.lock().expect("lock").push(seen.clone());
        let from_rule = self
            .rule
            .lock()
            .expect("lock")
            .as_ref()
            .and_then(|r| r(&seen));
        let step = from_rule.or_else(|| self.script.lock().expect("lock").pop_front());
        match step {
            None => Ok(accept(&seen, &[])),
            Some(Step::AcceptRejecting(indices)) => Ok(accept(&seen, &indices)),
            Some(Step::Status(status, headers, body)) => Ok(Response {
                status,
                headers,
                body: ResponseBody::Full(body.into()),
            }),
            Some(Step::Fail(error)) => Err(error()),
            Some(Step::Hang) => std::future::pending().await,
        }
    }
}

/// A builder with the test server as transport and a fixed device id.
pub fn builder(server: &Arc<ScriptedServer>) -> IngestClientBuilder {
    IngestClient::builder("http://ingest.test", "a".repeat(64), "app-1")
        .transport(Arc::clone(server) as Arc<dyn RequestTransport>)
        .device_id("test-host")
}

/// Collects what `on_error` is given, as text.
#[derive(Clone, Default)]
pub struct Errors(Arc<Mutex<Vec<String>>>);

impl Errors {
    pub fn callback(&self) -> impl Fn(&DeliveryError) + Send + Sync + 'static {
        let errors = self.0.clone();
        move |e| errors.lock().expect("lock").push(e.to_string())
    }

    pub fn all(&self) -> Vec<String> {
        self.0.lock().expect("lock").clone()
    }
}

/// A custom event carrying its sequence number in `int_params.seq`.
pub fn numbered(seq: i64) -> courier_ingest::sdk::Event {
    courier_ingest::sdk::Event::custom("numbered").param("seq", seq)
}

/// Lets the worker run until it waits on time or the transport: advances the paused clock by
/// a millisecond.
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}
