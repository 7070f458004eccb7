//! A loopback HTTP/1.1 proxy that injects one fault per request, as a schedule says: a 5xx
//! answered in the server's place, a connection reset before or after the server saw the
//! request, or an answer held back.
//!
//! It reads each request (head and `Content-Length` body), asks the schedule what to do, and
//! forwards through an [`HttpTransport`]. The schedule is asked in the order requests arrive, so
//! a client with one request in flight sees the same faults on every run of a seeded schedule.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use courier::impls::http::HttpTransport;
use courier::traits::transport::{Method, Request, RequestTransport};
use courier_testkit::checker::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// What the proxy does with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Forward and relay the answer.
    Pass,
    /// Answer this status itself; the server never sees the request.
    Status(u16),
    /// Reset the connection before forwarding: the server never sees the request.
    ResetBefore,
    /// Forward, then reset instead of relaying: the server stored it, the client cannot know.
    ResetAfter,
    /// Forward, then hold the answer this long before relaying it.
    Delay(Duration),
}

impl Fault {
    fn kind(&self) -> &'static str {
        match self {
            Fault::Pass => "pass",
            Fault::Status(_) => "status",
            Fault::ResetBefore => "reset_before",
            Fault::ResetAfter => "reset_after",
            Fault::Delay(_) => "delay",
        }
    }
}

/// Chooses the fault of each request, in arrival order.
pub(crate) type Schedule = Box<dyn FnMut() -> Fault + Send>;

/// A seeded schedule: `weights` are the relative chances of pass, 503, 500, reset before,
/// reset after, a delay in `short`, and a delay of `long` (past the client's timeout).
pub(crate) fn seeded_schedule(
    seed: u64,
    weights: [u64; 7],
    short: (Duration, Duration),
    long: Duration,
) -> Schedule {
    let mut rng: Rng = courier_testkit::checker::Seed(seed).rng(0);
    Box::new(move || match rng.weighted(&weights) {
        0 => Fault::Pass,
        1 => Fault::Status(503),
        2 => Fault::Status(500),
        3 => Fault::ResetBefore,
        4 => Fault::ResetAfter,
        5 => Fault::Delay(rng.duration(short.0, short.1)),
        _ => Fault::Delay(long),
    })
}

/// A running proxy; it stops, with every connection it carries, when dropped.
pub(crate) struct FaultProxy {
    addr: SocketAddr,
    log: Arc<Mutex<BTreeMap<&'static str, usize>>>,
    task: JoinHandle<()>,
}

struct Shared {
    upstream: HttpTransport,
    schedule: Mutex<Schedule>,
    log: Arc<Mutex<BTreeMap<&'static str, usize>>>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`http://host:port`).
    pub(crate) async fn start(upstream: &str, schedule: Schedule) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let log = Arc::new(Mutex::new(BTreeMap::new()));
        let shared = Arc::new(Shared {
            // Longer than any delay the tests inject: the proxy itself never gives up first.
            upstream: HttpTransport::new(upstream)
                .expect("upstream url")
                .with_timeout(Duration::from_secs(30)),
            schedule: Mutex::new(schedule),
            log: log.clone(),
        });
        let task = tokio::spawn(accept_loop(listener, shared));
        FaultProxy { addr, log, task }
    }

    /// `http://127.0.0.1:PORT`, for clients.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many requests got each kind of fault (`pass`, `status`, `reset_before`, ...).
    pub(crate) fn log(&self) -> BTreeMap<&'static str, usize> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, shared.clone()));
                }
                Err(_) => return,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One parsed request.
struct Incoming {
    method: Method,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

const MAX_HEAD: usize = 64 << 10;
const MAX_BODY: usize = 64 << 20;

/// Serves requests on one client connection until it closes or a fault ends it.
async fn serve_connection(mut client: TcpStream, shared: Arc<Shared>) {
    let mut buffer = Vec::new();
    while let Some(request) = read_request(&mut client, &mut buffer).await {
        let fault = {
            let mut schedule = shared.schedule.lock().unwrap_or_else(|e| e.into_inner());
            (schedule)()
        };
        *shared
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(fault.kind())
            .or_insert(0) += 1;
        let answer = match fault {
            Fault::ResetBefore => return reset(client),
            Fault::Status(status) => status_only(status),
            Fault::Pass | Fault::ResetAfter | Fault::Delay(_) => {
                let answer = forward(&shared.upstream, request).await;
                match fault {
                    Fault::ResetAfter => return reset(client),
                    Fault::Delay(hold) => tokio::time::sleep(hold).await,
                    _ => {}
                }
                answer
            }
        };
        if client.write_all(&answer).await.is_err() {
            return;
        }
    }
}

/// Closes with RST (zero linger) rather than FIN: the client sees a reset connection.
fn reset(client: TcpStream) {
    let _ = client.set_zero_linger();
    drop(client);
}

/// Reads one request; `None` when the client closed or sent something this proxy cannot read.
async fn read_request(client: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Incoming> {
    let head_end = loop {
        if let Some(at) = find(buffer, b"\r\n\r\n") {
            break at;
        }
        if buffer.len() > MAX_HEAD || read_more(client, buffer).await == 0 {
            return None;
        }
    };
    let head = std::str::from_utf8(&buffer[..head_end]).ok()?.to_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = match request_line.next()? {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "OPTIONS" => Method::Options,
        _ => return None,
    };
    let target = request_line.next()?.to_owned();
    let mut headers = Vec::new();
    let mut length = 0usize;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse().ok()?,
            // Chunked bodies are not read by this proxy; the SDK sends a length.
            "transfer-encoding" => return None,
            "host" | "connection" | "keep-alive" => {}
            _ => headers.push((name, value)),
        }
    }
    if length > MAX_BODY {
        return None;
    }
    let body_start = head_end + 4;
    while buffer.len() < body_start + length {
        if read_more(client, buffer).await == 0 {
            return None;
        }
    }
    let body = buffer[body_start..body_start + length].to_vec();
    buffer.drain(..body_start + length);
    Some(Incoming {
        method,
        target,
        headers,
        body,
    })
}

async fn read_more(client: &mut TcpStream, buffer: &mut Vec<u8>) -> usize {
    let mut chunk = [0u8; 16 << 10];
    match client.read(&mut chunk).await {
        Ok(n) => {
            buffer.extend_from_slice(&chunk[..n]);
            n
        }
        Err(_) => 0,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Sends the request upstream; the answer as HTTP/1.1 bytes (a 502 when upstream fails).
async fn forward(upstream: &HttpTransport, incoming: Incoming) -> Vec<u8> {
    let mut request = Request::new(incoming.method, incoming.target);
    for (name, value) in incoming.headers {
        request = request.header(name, value);
    }
    let request = request.body(incoming.body);
    let response = match upstream.send(request).await {
        Ok(response) => response,
        Err(_) => return status_only(502),
    };
    let status = response.status;
    let headers: Vec<(String, String)> = response
        .headers
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.to_ascii_lowercase().as_str(),
                "content-length" | "transfer-encoding" | "connection" | "keep-alive"
            )
        })
        .cloned()
        .collect();
    let Ok(body) = response.body.collect(MAX_BODY).await else {
        return status_only(502);
    };
    encode_response(status, &headers, &body)
}

fn status_only(status: u16) -> Vec<u8> {
    let body = format!(r#"{{"message":"injected by the test proxy: {status}"}}"#);
    encode_response(
        status,
        &[("content-type".into(), "application/json".into())],
        body.as_bytes(),
    )
}

fn encode_response(status: u16, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} Proxied\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}
