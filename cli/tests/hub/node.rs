//! A `courier hub` process for tests, its HTTP API, and SDK clients that record what they get.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use courier::hub::sdk::{Event, HubClient};
use courier::impls::http::HttpTransport;
use courier::traits::transport::{Frame, Method, Request, RequestTransport};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

pub(crate) const API_KEY: &str = "test-key";
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// A hub process on a free loopback port; killed on drop.
pub(crate) struct Node {
    pub(crate) port: u16,
    child: Child,
    http: HttpTransport,
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

impl Node {
    /// Starts `courier hub` with `config` (YAML file) and extra flags; waits for /health.
    pub(crate) async fn start(config: &Path, extra: &[&str]) -> Node {
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_courier"))
            .arg("hub")
            .arg("--config")
            .arg(config)
            .args(["--addr", &format!("127.0.0.1:{port}"), "--api-key", API_KEY])
            .args(extra)
            .env("COURIER_LOG", "courier_hub=info,warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("courier binary starts");
        let http = HttpTransport::new(&format!("http://127.0.0.1:{port}")).expect("url");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(r) = http.send(Request::new(Method::Get, "/health")).await
                && r.status == 200
            {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("courier hub exited early: {status}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "hub did not come up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Node { port, child, http }
    }

    pub(crate) fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    pub(crate) async fn api(
        &self,
        method: Method,
        target: &str,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let request = Request::new(method, target)
            .header("Authorization", format!("Bearer {API_KEY}"))
            .body(body.to_owned());
        let response = self.http.send(request).await.expect("api answers");
        let status = response.status;
        let body = response.body.collect(1 << 20).await.expect("body");
        (
            status,
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    pub(crate) async fn broadcast(&self, text: &str) -> serde_json::Value {
        let (status, body) = self.api(Method::Post, "/api/v1/broadcast", text).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub(crate) async fn cluster_count(&self) -> u64 {
        let (_, body) = self.api(Method::Get, "/api/v1/clients/count", "").await;
        body["cluster"].as_u64().unwrap_or(0)
    }

    pub(crate) async fn health(&self) -> serde_json::Value {
        let response = self
            .http
            .send(Request::new(Method::Get, "/health"))
            .await
            .expect("health");
        let body = response.body.collect(1 << 16).await.expect("body");
        serde_json::from_slice(&body).unwrap_or_default()
    }

    pub(crate) async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// An SDK client and its event stream.
pub(crate) struct TestClient {
    pub(crate) client: HubClient,
    events: mpsc::Receiver<Event>,
}

impl TestClient {
    /// Connects as `id` and waits for the welcome.
    pub(crate) async fn connect(node: &Node, id: &str) -> TestClient {
        TestClient::connect_with(node, id, true).await
    }

    pub(crate) async fn connect_with(node: &Node, id: &str, reconnect: bool) -> TestClient {
        let mut builder = HubClient::builder(&node.ws_url()).client_id(id);
        if !reconnect {
            builder = builder.reconnect(courier::impls::retry::NeverRetry);
        }
        let (client, events) = builder.connect();
        let mut this = TestClient { client, events };
        match this.next_event().await {
            Event::Connected { client_id, .. } => assert_eq!(client_id, id),
            other => panic!("{id}: expected Connected, got {other:?}"),
        }
        this
    }

    pub(crate) async fn next_event(&mut self) -> Event {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("event in time")
            .expect("client running")
    }

    /// The next text message.
    pub(crate) async fn next_text(&mut self) -> String {
        loop {
            match self.next_event().await {
                Event::Message(Frame::Text(text)) => return text,
                Event::Message(_) => continue,
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    /// No message arrives within `quiet`.
    pub(crate) async fn assert_quiet(&mut self, quiet: Duration) {
        if let Ok(Some(event)) = tokio::time::timeout(quiet, self.events.recv()).await {
            panic!("expected nothing, got {event:?}");
        }
    }
}

pub(crate) async fn until<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
