//! Events/s the server accepts: batches of fixed-size events over HTTP/1.1 keep-alive
//! connections, each batch answered before the connection sends the next.
//!
//! The bodies of the timed run are built before it starts, so the load generator spends no
//! CPU formatting JSON while the server competes with it for the same cores: a short warm-up
//! (bodies built as they are sent) measures the rate, and enough bodies for
//! [`POOL_MARGIN`] times that rate over the run are built, every event with its own key.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use courier::impls::http::HttpTransport;
use courier::traits::transport::{Method, Request, RequestTransport};
use serde::Deserialize;

use crate::child::ServerProcess;
use crate::drive::{Tally, drive};
use crate::events::{EVENT_BYTES, EventWriter};
use crate::load_client::LoadClient;
use crate::raw_http::{RawConnection, accepted_count, batch_request};
use crate::settings::Settings;

/// The part of the 200 body the load reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Accepted {
    accepted_count: u64,
}

/// Sends batches to the server with one of the [`LoadClient`]s.
#[derive(Clone)]
enum Sender {
    Transport {
        transport: Arc<HttpTransport>,
        key: Arc<str>,
    },
    Raw {
        addr: Arc<str>,
        key: Arc<str>,
        /// Connections between requests: a loop takes one for its request and puts it back.
        idle: Arc<Mutex<Vec<RawConnection>>>,
    },
}

/// How long a batch may take before the load gives up on it.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

impl Sender {
    fn new(client: LoadClient, addr: &str, key: &str) -> Result<Sender, String> {
        Ok(match client {
            LoadClient::Transport => Sender::Transport {
                transport: Arc::new(
                    HttpTransport::new(&format!("http://{addr}"))
                        .map_err(|e| format!("transport: {e}"))?
                        .with_timeout(ANSWER_TIMEOUT),
                ),
                key: key.into(),
            },
            LoadClient::Raw => Sender::Raw {
                addr: addr.into(),
                key: key.into(),
                idle: Arc::new(Mutex::new(Vec::new())),
            },
        })
    }

    /// What [`Sender::send`] takes for `body`: the body itself, or the whole request.
    fn prepare(&self, body: String) -> Bytes {
        match self {
            Sender::Transport { .. } => Bytes::from(body),
            Sender::Raw { key, .. } => Bytes::from(batch_request(key, body.as_bytes())),
        }
    }

    /// One batch, prepared by [`Sender::prepare`]; the number the server accepted (all of
    /// them, or it is an error).
    async fn send(&self, prepared: Bytes, expected: u64) -> Result<u64, String> {
        match self {
            Sender::Transport { transport, key } => post(transport, key, prepared, expected).await,
            Sender::Raw { addr, idle, .. } => {
                let taken = idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let mut connection = match taken {
                    Some(connection) => connection,
                    None => RawConnection::connect(addr, ANSWER_TIMEOUT).await?,
                };
                let (status, body) = connection.exchange(&prepared).await?;
                if status != 200 {
                    return Err(format!(
                        "status {status}: {}",
                        String::from_utf8_lossy(body)
                    ));
                }
                match accepted_count(body) {
                    Some(accepted) if accepted == expected => {}
                    _ => {
                        return Err(format!(
                            "not {expected} accepted: {}",
                            String::from_utf8_lossy(body)
                                .chars()
                                .take(300)
                                .collect::<String>()
                        ));
                    }
                }
                // Only a connection whose answer was whole and right serves again.
                idle.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(connection);
                Ok(expected)
            }
        }
    }
}

/// One batch to `transport`; the number the server accepted (all of them, or it is an error).
async fn post(
    transport: &HttpTransport,
    key: &str,
    body: impl Into<Bytes>,
    expected: u64,
) -> Result<u64, String> {
    let request = Request::new(Method::Post, "/v1/events/batch")
        .header("content-type", "application/json")
        .header("x-api-key", key)
        .body(body);
    let response = transport
        .send(request)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status;
    let body = response
        .body
        .collect(16 << 20)
        .await
        .map_err(|e| format!("response body: {e}"))?;
    if status != 200 {
        return Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    let accepted: Accepted =
        serde_json::from_slice(&body).map_err(|e| format!("unexpected 200 body: {e}"))?;
    if accepted.accepted_count != expected {
        return Err(format!(
            "{} of {expected} accepted: {}",
            accepted.accepted_count,
            String::from_utf8_lossy(&body)
                .chars()
                .take(300)
                .collect::<String>()
        ));
    }
    Ok(accepted.accepted_count)
}

/// How many times the warm-up's rate the pre-built bodies cover (the timed run is faster than
/// the warm-up, whose load generator formats every body while it runs).
const POOL_MARGIN: f64 = 3.0;

/// How many times the fastest earlier timed run's rate (of the same batch size) the pool
/// covers at least: the warm-up's rate alone can be far below the timed run's.
const HINT_MARGIN: f64 = 1.5;

/// The longest warm-up: long enough for a stable rate, short beside the timed run.
const MAX_WARM_UP: Duration = Duration::from_secs(1);

/// The warm-up before a timed run of `duration`: a fifth of it, at most [`MAX_WARM_UP`]. The
/// ceiling warms up as long.
pub(crate) fn warm_up_time(duration: Duration) -> Duration {
    (duration / 5).min(MAX_WARM_UP)
}

/// The pre-built bodies ever held at once, in bytes: a bound on the bench's memory.
const MAX_POOL_BYTES: usize = 4 << 30;

/// A timed run and how it was fed.
#[derive(Debug)]
pub(crate) struct Load {
    /// The timed run.
    pub(crate) tally: Tally,
    /// Events accepted before it (warm-up), also in the stream.
    pub(crate) warm_up_events: u64,
    /// Batches of the timed run whose body was pre-built.
    pub(crate) pre_built: usize,
    /// Batches of the timed run that outran the pool and were formatted while it ran (0 when
    /// the pool was large enough; otherwise the load generator competed with the server).
    pub(crate) built_inline: u64,
    /// The server's CPU time over the timed run alone.
    pub(crate) server_cpu: Duration,
    /// This process's CPU time over the timed run: the load generator's share of the cores.
    pub(crate) load_cpu: Duration,
}

/// Drives `server` for `settings.duration` with `settings.connections` loops of `batch` events
/// for `app` (key `key`), sent by `settings.load`: a first batch (stream creation, connection set-up), a warm-up that
/// sizes the pool of bodies, then the timed run from that pool, with the CPU time of the
/// server's process read around it. `rate_hint` (events/s, 0 if none) is the
/// fastest earlier timed run of this batch size, so the pool also covers that.
pub(crate) async fn run(
    server: &ServerProcess,
    app: &str,
    key: &str,
    batch: usize,
    settings: &Settings,
    rate_hint: f64,
) -> Result<Load, String> {
    let (connections, duration) = (settings.connections, settings.duration);
    let sender = Sender::new(settings.load, &server.addr, key)?;
    let writer = Arc::new(EventWriter::new(app)?);
    sender
        .send(sender.prepare(writer.batch(0, batch)), batch as u64)
        .await?;
    // Event numbers of each phase start after the previous phase's last.
    let mut offset = batch as u64;

    let warm_up = drive(connections, warm_up_time(duration), batch, {
        let (sender, writer) = (sender.clone(), writer.clone());
        move |first| {
            let (sender, writer) = (sender.clone(), writer.clone());
            async move {
                let body = sender.prepare(writer.batch(offset + first, batch));
                sender.send(body, batch as u64).await
            }
        }
    })
    .await;
    if let Some(error) = warm_up.first_error {
        return Err(format!("warm-up: {error}"));
    }
    // Every send took the next numbers, answered or not.
    offset += (warm_up.batches + warm_up.failures) * batch as u64;

    let rate = (warm_up.rate() * POOL_MARGIN).max(rate_hint * HINT_MARGIN);
    let wanted = rate * duration.as_secs_f64() / batch as f64;
    let most = MAX_POOL_BYTES / (batch * (EVENT_BYTES + 1));
    let pool_len = (wanted.ceil() as usize)
        .saturating_add(connections)
        .min(most);
    let pool: Arc<Vec<Bytes>> = Arc::new(
        (0..pool_len as u64)
            .map(|i| sender.prepare(writer.batch(offset + i * batch as u64, batch)))
            .collect(),
    );
    let built_inline = Arc::new(AtomicU64::new(0));
    let cpu_before = server.cpu()?;
    let own_before = crate::proc_cpu::cpu_time(std::process::id())?;
    let tally = drive(connections, duration, batch, {
        let built_inline = built_inline.clone();
        move |first| {
            let (sender, writer, pool, built_inline) = (
                sender.clone(),
                writer.clone(),
                pool.clone(),
                built_inline.clone(),
            );
            async move {
                // `first` counts from 0 in steps of `batch`: body `first / batch` of the pool.
                let body = match pool.get((first / batch as u64) as usize) {
                    Some(body) => body.clone(),
                    None => {
                        built_inline.fetch_add(1, Ordering::Relaxed);
                        sender.prepare(writer.batch(offset + first, batch))
                    }
                };
                sender.send(body, batch as u64).await
            }
        }
    })
    .await;
    let server_cpu = server.cpu()?.saturating_sub(cpu_before);
    let load_cpu = crate::proc_cpu::cpu_time(std::process::id())?.saturating_sub(own_before);
    Ok(Load {
        tally,
        warm_up_events: batch as u64 + warm_up.events,
        pre_built: pool_len,
        built_inline: built_inline.load(Ordering::Relaxed),
        server_cpu,
        load_cpu,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use courier::impls::memory::MemoryStreamStorage;
    use courier_ingest::server::{
        ApiKeyChecker, IngestConfig, IngestServer, KeyDigest, KeyRecord, MemoryKeyStore,
    };
    use tokio::net::TcpListener;

    use super::*;

    const KEY: &str = "abababababababababababababababababababababababababababababababab";

    /// A real `IngestServer` on a loopback port, app `raw` with [`KEY`].
    async fn server() -> (String, tokio::sync::oneshot::Sender<()>) {
        let keys = MemoryKeyStore::new();
        keys.insert(KeyRecord {
            id: "k".to_owned(),
            app_id: "raw".to_owned(),
            name: "k".to_owned(),
            digest: KeyDigest::of_key(KEY),
            revoked: false,
        });
        let server = IngestServer::new(
            Arc::new(MemoryStreamStorage::new()),
            ApiKeyChecker::new(Arc::new(keys)),
            IngestConfig::default(),
        )
        .expect("server");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    /// Both load clients get every batch accepted and refuse what is not: a wrong count, a
    /// wrong key; the raw one keeps one connection across requests.
    #[tokio::test]
    async fn both_clients_check_status_and_accepted_count() {
        let (addr, _stop) = server().await;
        let writer = EventWriter::new("raw").expect("writer");
        for client in [LoadClient::Raw, LoadClient::Transport] {
            let sender = Sender::new(client, &addr, KEY).expect("sender");
            for first in [0, 100, 200] {
                let body = sender.prepare(writer.batch(first, 7));
                assert_eq!(sender.send(body, 7).await, Ok(7), "{client:?}");
            }
            let body = sender.prepare(writer.batch(300, 3));
            let error = sender.send(body, 4).await.expect_err("3 of 4");
            assert!(error.contains("\"acceptedCount\":3"), "{client:?}: {error}");
            let stranger = Sender::new(client, &addr, &KEY.replace('a', "c")).expect("sender");
            let body = stranger.prepare(writer.batch(400, 1));
            let error = stranger.send(body, 1).await.expect_err("unknown key");
            assert!(error.starts_with("status 401"), "{client:?}: {error}");
            if let Sender::Raw { idle, .. } = &sender {
                assert_eq!(idle.lock().expect("lock").len(), 0, "failed one not kept");
            }
        }
    }
}
