//! A browser can use the hub: headless Chromium (Debian's package) opens the demo page the
//! hub serves, which connects over WebSocket, pings, and shows broadcasts. The test reads the
//! page's state through the DevTools protocol.

// Shared with hub_cluster.rs; this test uses part of it.
#[allow(dead_code)]
#[path = "hub/node.rs"]
mod node;

use std::process::Stdio;
use std::time::Duration;

use courier::impls::http::HttpTransport;
use courier::impls::websocket::WsTransport;
use courier::traits::transport::{DuplexTransport, Frame, Method, Request, RequestTransport};
use node::{Node, WAIT, until};

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"].into_iter().find(|name| {
        std::process::Command::new(name)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_page_connects_pings_and_shows_broadcasts_in_headless_chromium() {
    // scripts/test installs Debian's chromium; a machine without it fails loudly here
    // rather than skipping, so a missing browser cannot pass as a green run.
    let browser = chromium().expect("chromium is installed (apt-get install chromium)");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("hub.yaml");
    std::fs::write(&config, "server:\n  ping_interval: 1s\n").expect("config");
    let hub = Node::start(&config, &[]).await;

    let page = format!(
        "http://127.0.0.1:{}/?autoping=1&client_id=browser",
        hub.port
    );
    let (_chromium, devtools_port) = launch(browser, dir.path(), &page);

    // The page connected as client "browser".
    until("the browser connects", || async {
        let (_, body) = hub.api(Method::Get, "/api/v1/clients/count", "").await;
        body["local"].as_u64() == Some(1)
    })
    .await;
    hub.broadcast("hello from the test").await;

    let devtools = DevTools::attach(devtools_port).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let state = loop {
        let state = devtools
            .evaluate(
                "JSON.stringify({state: document.getElementById('state').textContent, \
                 client: document.getElementById('client').textContent, \
                 broadcasts: document.getElementById('broadcasts').textContent, \
                 last: document.getElementById('last').textContent, \
                 rtt: document.getElementById('rtt').textContent})",
            )
            .await;
        let state: serde_json::Value = serde_json::from_str(&state).expect("page state JSON");
        if state["broadcasts"] == "1" && state["rtt"].as_str().is_some_and(|r| r.contains("pong 1"))
        {
            break state;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "page state: {state}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(state["state"], "connected");
    assert_eq!(state["client"], "browser");
    assert_eq!(state["last"], "hello from the test");
    hub.stop().await;
}

/// Starts headless `browser` on `page`; the process (killed on drop) and its DevTools port.
fn launch(browser: &str, dir: &std::path::Path, page: &str) -> (tokio::process::Child, u16) {
    let devtools_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let child = tokio::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            &format!("--user-data-dir={}", dir.join("profile").display()),
            &format!("--remote-debugging-port={devtools_port}"),
            "--remote-debugging-address=127.0.0.1",
            page,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromium starts");
    (child, devtools_port)
}

/// Evaluates `expression` (a string) until `done` holds for it; panics after [`WAIT`].
async fn wait_for(devtools: &DevTools, expression: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let value = devtools.evaluate(expression).await;
        if done(&value) {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "page shows: {value}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_page_subscribes_and_shows_history_after_a_reload() {
    let browser = chromium().expect("chromium is installed (apt-get install chromium)");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("hub.yaml");
    std::fs::write(
        &config,
        "channels:\n  rules:\n    - pattern: chat.*\n      history: { max_len: 100, max_age: 10m }\n  history_storage: memory\n",
    )
    .expect("config");
    let hub = Node::start(&config, &[]).await;
    let page = format!("http://127.0.0.1:{}/?channel=chat.demo", hub.port);
    let (_chromium, devtools_port) = launch(browser, dir.path(), &page);
    let devtools = DevTools::attach(devtools_port).await;
    let history = "Array.from(document.querySelectorAll('#history li')).map(li => li.textContent.split('  @')[0]).join(',')";
    let status = "document.getElementById('chanstate').textContent";
    wait_for(&devtools, status, |s| s.starts_with("subscribed")).await;
    for text in ["one", "two"] {
        let (code, body) = hub
            .api(
                Method::Post,
                "/api/v1/channels/chat.demo/publish",
                &format!("{text:?}"),
            )
            .await;
        assert_eq!(code, 200, "{body}");
    }
    wait_for(&devtools, history, |h| h == r#""one","two""#).await;

    // The page moves to another channel, one more is published on this one, then the page
    // is reloaded: all three are shown, two from the page's own storage, the third
    // recovered from the channel's history.
    devtools
        .evaluate("$('channel').value = 'chat.other'; subscribe(); 'moved'")
        .await;
    wait_for(&devtools, history, str::is_empty).await;
    let (code, body) = hub
        .api(
            Method::Post,
            "/api/v1/channels/chat.demo/publish",
            r#""three""#,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    devtools.evaluate("location.reload(); 'reloading'").await;
    wait_for(&devtools, history, |h| h == r#""one","two","three""#).await;
    let status = wait_for(&devtools, status, |s| s.contains("recovered")).await;
    assert!(status.contains("1 recovered"), "{status}");
    hub.stop().await;
}

/// Just enough of the DevTools protocol to evaluate an expression in the page.
struct DevTools {
    connection: tokio::sync::Mutex<courier::traits::transport::DuplexConnection>,
}

impl DevTools {
    async fn attach(port: u16) -> DevTools {
        let http = HttpTransport::new(&format!("http://127.0.0.1:{port}")).expect("url");
        let deadline = tokio::time::Instant::now() + WAIT;
        let url = loop {
            if let Ok(response) = http.send(Request::new(Method::Get, "/json/list")).await
                && let Ok(body) = response.body.collect(1 << 20).await
            {
                let list: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let found = list.as_array().and_then(|pages| {
                    pages
                        .iter()
                        .find(|p| p["type"] == "page")
                        .and_then(|p| p["webSocketDebuggerUrl"].as_str())
                        .map(str::to_owned)
                });
                if let Some(url) = found {
                    break url;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no DevTools page target"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let path = url
            .strip_prefix(&format!("ws://127.0.0.1:{port}"))
            .expect("debugger URL on the port asked for")
            .to_owned();
        let ws = WsTransport::new(&format!("ws://127.0.0.1:{port}")).expect("ws url");
        let connection = ws
            .connect(&path, Vec::new())
            .await
            .expect("devtools connects");
        DevTools {
            connection: tokio::sync::Mutex::new(connection),
        }
    }

    async fn evaluate(&self, expression: &str) -> String {
        let mut conn = self.connection.lock().await;
        let request = serde_json::json!({
            "id": 1,
            "method": "Runtime.evaluate",
            "params": { "expression": expression, "returnByValue": true },
        });
        conn.sender
            .send(Frame::Text(request.to_string()))
            .await
            .expect("send");
        loop {
            let frame = tokio::time::timeout(WAIT, conn.receiver.recv())
                .await
                .expect("devtools answers")
                .expect("devtools frame");
            if let Some(Frame::Text(text)) = frame {
                let reply: serde_json::Value = serde_json::from_str(&text).expect("json");
                if reply["id"] == 1 {
                    return reply["result"]["result"]["value"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                }
            }
        }
    }
}
