//! What the subscription tests share: a server over a given storage, a JSON client, a real
//! webhook receiver on loopback, and signature verification against the published JWKS.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use courier_impls::http::HttpTransport;
use courier_streams::server::{ServerConfig, StreamsServer, SubscriptionSettings};
use courier_traits::storage::StreamStorage;
use courier_traits::transport::{Method, Request, RequestTransport};
use ring::signature::{ED25519, UnparsedPublicKey};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Every request and wait of these tests ends by then.
pub(crate) const LIMIT: Duration = Duration::from_secs(10);

/// A `StreamsServer` on a free loopback port.
pub(crate) struct Node {
    pub(crate) base: String,
    http: HttpTransport,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Node {
    pub(crate) async fn start(
        storage: Arc<dyn StreamStorage>,
        settings: SubscriptionSettings,
    ) -> Node {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let config = ServerConfig {
            long_poll_timeout: Duration::from_millis(300),
            subscriptions: Some(settings),
            ..ServerConfig::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let server = StreamsServer::new(storage, config);
        let task = tokio::spawn(server.serve(listener, async move {
            let _ = stopped.await;
        }));
        let base = format!("http://{addr}");
        let http = HttpTransport::new(&base)
            .expect("transport")
            .with_timeout(LIMIT);
        Node {
            base,
            http,
            stop: Some(stop),
            task,
        }
    }

    /// Stops the server and waits for it.
    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(LIMIT, &mut self.task).await;
        self.task.abort();
    }

    /// Sends a request; the status and the body (JSON when there is one, else `null`).
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = Request::new(method, path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = self.http.send(request).await.expect("request answered");
        let status = response.status;
        let bytes = response.body.collect(1 << 20).await.expect("body");
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    pub(crate) async fn put_subscription(&self, id: &str, body: Value) -> (u16, Value) {
        let path = format!("/v1/stream/__ds/subscriptions/{id}");
        self.send(Method::Put, &path, &[], Some(body)).await
    }

    pub(crate) async fn get_subscription(&self, id: &str) -> (u16, Value) {
        let path = format!("/v1/stream/__ds/subscriptions/{id}");
        self.send(Method::Get, &path, &[], None).await
    }

    pub(crate) async fn jwks(&self) -> Value {
        let (status, jwks) = self
            .send(Method::Get, "/v1/stream/__ds/jwks.json", &[], None)
            .await;
        assert_eq!(status, 200);
        jwks
    }

    /// `POST` of one JSON message to `stream` (created as a JSON stream if missing).
    pub(crate) async fn append(&self, stream: &str, message: Value) {
        let path = format!("/v1/stream/{stream}");
        let json = [("content-type", "application/json")];
        let mut request = Request::new(Method::Put, &path);
        request = request.header(json[0].0, json[0].1);
        let created = self.http.send(request).await.expect("create answered");
        assert!(
            created.status == 201 || created.status == 200,
            "create {stream}"
        );
        let (status, _) = self.send(Method::Post, &path, &[], Some(message)).await;
        assert_eq!(status, 204, "append to {stream}");
    }

    /// The tail offset of the stream at `path` (`HEAD`).
    pub(crate) async fn tail(&self, path: &str) -> String {
        let response = self
            .http
            .send(Request::new(Method::Head, path))
            .await
            .expect("HEAD answered");
        response
            .header("stream-next-offset")
            .expect("a tail offset")
            .to_owned()
    }

    /// `POST` to an action of a subscription with a bearer token.
    pub(crate) async fn action(
        &self,
        id: &str,
        action: &str,
        token: &str,
        body: Value,
    ) -> (u16, Value) {
        let path = format!("/v1/stream/__ds/subscriptions/{id}/{action}");
        let bearer = format!("Bearer {token}");
        self.send(
            Method::Post,
            &path,
            &[("authorization", &bearer)],
            Some(body),
        )
        .await
    }
}

/// Settings for tests: loopback webhooks allowed, quick retries.
pub(crate) fn test_settings() -> SubscriptionSettings {
    SubscriptionSettings {
        allow_loopback_webhooks: true,
        webhook_timeout: Duration::from_secs(5),
        webhook_retry: Arc::new(
            courier_impls::retry::FixedDelay::new(Duration::from_millis(50)).max_attempts(5),
        ),
        ..SubscriptionSettings::default()
    }
}

/// One request the receiver got.
#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    pub(crate) signature: Option<String>,
    pub(crate) raw: Bytes,
    pub(crate) body: Value,
}

#[derive(Clone)]
struct ReceiverState {
    delivered: mpsc::Sender<Delivery>,
    /// Statuses to answer the next requests with (then 200).
    fail_with: Arc<Mutex<VecDeque<u16>>>,
    answer: Value,
}

/// A webhook receiver: an HTTP server on 127.0.0.1 that records every POST.
pub(crate) struct Receiver {
    pub(crate) url: String,
    received: mpsc::Receiver<Delivery>,
    fail_with: Arc<Mutex<VecDeque<u16>>>,
    task: JoinHandle<()>,
}

impl Receiver {
    /// A receiver answering `answer` (e.g. `{"done":true}`) with 200.
    pub(crate) async fn start(answer: Value) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let url = format!("http://{addr}/hook");
        Receiver::serve(listener, url, answer)
    }

    /// An `https` receiver at `https://localhost:<port>/hook` with a fresh self-signed
    /// certificate for `localhost`; the certificate (DER) is returned for the server to trust.
    pub(crate) async fn start_tls(answer: Value) -> (Receiver, Vec<u8>) {
        use tokio_rustls::rustls::ServerConfig;
        use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
        let der = certified.cert.der().to_vec();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_no_client_auth()
            .with_single_cert(vec![der.clone().into()], key)
            .expect("server config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let port = listener.local_addr().expect("addr").port();
        let tls = TlsListener {
            tcp: listener,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        };
        let url = format!("https://localhost:{port}/hook");
        (Receiver::serve(tls, url, answer), der)
    }

    fn serve<L: axum::serve::Listener>(listener: L, url: String, answer: Value) -> Receiver
    where
        L::Addr: std::fmt::Debug,
    {
        let (delivered, received) = mpsc::channel(256);
        let fail_with = Arc::new(Mutex::new(VecDeque::new()));
        let state = ReceiverState {
            delivered,
            fail_with: fail_with.clone(),
            answer,
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url,
            received,
            fail_with,
            task,
        }
    }

    /// The next `statuses.len()` requests are answered with these statuses.
    pub(crate) fn fail_next(&self, statuses: &[u16]) {
        self.fail_with.lock().expect("lock").extend(statuses);
    }

    /// The next request, within [`LIMIT`].
    pub(crate) async fn next(&mut self) -> Delivery {
        tokio::time::timeout(LIMIT, self.received.recv())
            .await
            .expect("a webhook delivery within the limit")
            .expect("receiver running")
    }

    /// A request already received, if any.
    pub(crate) fn try_next(&mut self) -> Option<Delivery> {
        self.received.try_recv().ok()
    }

    /// A request arriving within `wait`, if any.
    pub(crate) async fn next_within(&mut self, wait: Duration) -> Option<Delivery> {
        tokio::time::timeout(wait, self.received.recv())
            .await
            .ok()
            .flatten()
    }
}

/// TLS over a loopback listener, for the `https` receiver.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            // A failed handshake (a client that does not trust the certificate) is dropped.
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(state): State<ReceiverState>,
    headers: HeaderMap,
    raw: Bytes,
) -> axum::response::Response {
    let delivery = Delivery {
        signature: headers
            .get("webhook-signature")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
        raw,
    };
    let _ = state.delivered.send(delivery).await;
    let fail = state.fail_with.lock().expect("lock").pop_front();
    match fail {
        Some(status) => StatusCode::from_u16(status)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
        None => (StatusCode::OK, state.answer.to_string()).into_response(),
    }
}

/// Verifies a delivery's `Webhook-Signature: t=<s>,kid=<kid>,ed25519=<b64url>` the way a
/// receiver would: the key named by `kid` in the JWKS, Ed25519 over `<t>.<raw body>`, and a
/// timestamp within 5 minutes of now.
pub(crate) fn signature_verifies(delivery: &Delivery, jwks: &Value) -> bool {
    signature_verifies_over(delivery.signature.as_deref(), &delivery.raw, jwks)
}

/// [`signature_verifies`] for any header and body (to show a changed body fails).
pub(crate) fn signature_verifies_over(header: Option<&str>, raw: &[u8], jwks: &Value) -> bool {
    let Some(header) = header else {
        return false;
    };
    let mut t = None;
    let mut kid = None;
    let mut sig = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<u64>().ok(),
            Some(("kid", v)) => kid = Some(v),
            Some(("ed25519", v)) => sig = URL_SAFE_NO_PAD.decode(v).ok(),
            _ => return false,
        }
    }
    let (Some(t), Some(kid), Some(sig)) = (t, kid, sig) else {
        return false;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    if now.abs_diff(t) > 300 {
        return false;
    }
    let Some(key) = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == json!(kid)))
    else {
        return false;
    };
    if key["kty"] != "OKP" || key["crv"] != "Ed25519" {
        return false;
    }
    let Some(x) = key["x"]
        .as_str()
        .and_then(|x| URL_SAFE_NO_PAD.decode(x).ok())
    else {
        return false;
    };
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(raw);
    UnparsedPublicKey::new(&ED25519, x)
        .verify(&signed, &sig)
        .is_ok()
}

/// Polls `check` every 20 ms until it holds, for at most [`LIMIT`].
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + LIMIT;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}
