//! Ingest nodes with keys in the storage's key log, driven through their routers: what the
//! key tests on every storage share.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use courier_ingest::server::{
    AdminApi, ApiKeyChecker, IngestConfig, IngestServer, KEY_LOG_STREAM, KeyLog, StorageKeyStore,
    TailConfig,
};
use courier_traits::storage::{ReadLimits, StreamName, StreamStorage};
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

pub const ADMIN_TOKEN: &str = "s3cret-admin-token";

/// One ingest node: its server (admin API mounted) and its key store.
pub struct Node {
    pub server: IngestServer,
    pub keys: Arc<StorageKeyStore>,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("JSON body: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// A node over `storage` with `token` as its admin token.
pub async fn node(storage: Arc<dyn StreamStorage>, token: Option<&str>, tail: TailConfig) -> Node {
    let log = Arc::new(KeyLog::open(Arc::clone(&storage)).await.expect("key log"));
    let keys = Arc::new(StorageKeyStore::start(Arc::clone(&log), tail));
    let server = IngestServer::new(
        storage,
        ApiKeyChecker::new(keys.clone()),
        IngestConfig::default(),
    )
    .expect("server")
    .with_admin(AdminApi::new(token, log));
    Node { server, keys }
}

/// Two nodes sharing `storage`, with the default tail.
pub async fn two_nodes(storage: &Arc<dyn StreamStorage>) -> (Node, Node) {
    let a = node(
        Arc::clone(storage),
        Some(ADMIN_TOKEN),
        TailConfig::default(),
    )
    .await;
    let b = node(
        Arc::clone(storage),
        Some(ADMIN_TOKEN),
        TailConfig::default(),
    )
    .await;
    (a, b)
}

pub fn admin_request(
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Request<axum::body::Body> {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = body.map_or_else(axum::body::Body::empty, |b| b.to_string().into());
    request.body(body).expect("request")
}

pub fn simple_event(app_id: &str, idempotency_key: &str) -> Value {
    json!({"event_type": "signup", "app_id": app_id, "idempotency_key": idempotency_key})
}

impl Node {
    pub async fn send(&self, request: Request<axum::body::Body>) -> Answer {
        let response = self
            .server
            .router()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Creates a key for `app_id` through the admin API: (id, key).
    pub async fn create_key(&self, app_id: &str) -> (String, String) {
        let answer = self
            .send(admin_request(
                "POST",
                "/api/admin/keys",
                Some(ADMIN_TOKEN),
                Some(json!({"app_id": app_id, "name": "test key"})),
            ))
            .await;
        assert_eq!(
            answer.status,
            201,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        let body = answer.json();
        (
            body["id"].as_str().expect("id").to_owned(),
            body["key"].as_str().expect("key").to_owned(),
        )
    }

    pub async fn revoke(&self, id: &str) -> Answer {
        self.send(admin_request(
            "DELETE",
            &format!("/api/admin/keys/{id}"),
            Some(ADMIN_TOKEN),
            None,
        ))
        .await
    }

    /// Posts one batch of `events` with `key`.
    pub async fn ingest(&self, key: Option<&str>, events: Vec<Value>) -> Answer {
        let mut request =
            Request::post("/v1/events/batch").header(header::CONTENT_TYPE, "application/json");
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        let body = json!({ "events": events }).to_string();
        self.send(request.body(body.into()).expect("request")).await
    }

    /// The status of one `app_id` event posted with `key`.
    pub async fn status_of_one(&self, key: &str, app_id: &str, idempotency_key: &str) -> u16 {
        self.ingest(Some(key), vec![simple_event(app_id, idempotency_key)])
            .await
            .status
            .as_u16()
    }

    /// Posts single events with `key` every 20 ms until the status is `want`, at most
    /// `within`; answers how long it took.
    pub async fn until_status(
        &self,
        key: &str,
        app_id: &str,
        want: u16,
        within: Duration,
    ) -> Duration {
        let started = std::time::Instant::now();
        let attempts = within.as_millis() / 20 + 1;
        for attempt in 0..attempts {
            let answer = self
                .ingest(
                    Some(key),
                    vec![simple_event(app_id, &format!("poll-{attempt}"))],
                )
                .await;
            if answer.status == want {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no {want} within {within:?}");
    }
}

/// Every byte of the named streams, concatenated (absent streams add nothing).
pub async fn stream_bytes(storage: &dyn StreamStorage, streams: &[&str]) -> Vec<u8> {
    let mut all = Vec::new();
    for name in streams {
        let name = StreamName::new(name).expect("name");
        let mut from = None;
        for _ in 0..1_000 {
            let Ok(batch) = storage
                .read(&name, from.clone(), ReadLimits::default())
                .await
            else {
                break;
            };
            for record in &batch.records {
                all.extend_from_slice(&record.data);
            }
            if batch.up_to_date {
                break;
            }
            from = Some(batch.next_offset);
        }
    }
    all
}

/// I4's cases and the cross-node rules on two nodes sharing one storage: keys created on
/// either node (at the same moment) work on both, a revocation on one holds on the other
/// within 5 s, and no key is ever stored.
pub async fn two_nodes_share_one_key_log(a: &Node, b: &Node, storage: &dyn StreamStorage) {
    let ((id_a, key_a), (_id_b, key_b)) =
        tokio::join!(a.create_key("app-1"), b.create_key("app-2"));
    let within = Duration::from_secs(5);
    // Each node knows its own key at once and the other's once its tail has read it.
    assert_eq!(
        a.ingest(Some(&key_a), vec![simple_event("app-1", "a1")])
            .await
            .status,
        200
    );
    b.until_status(&key_a, "app-1", 200, within).await;
    a.until_status(&key_b, "app-2", 200, within).await;

    // I4: missing, uppercase, unknown: the exact upstream 401 bodies on both nodes.
    for node in [a, b] {
        let missing = node.ingest(None, vec![simple_event("app-1", "m")]).await;
        assert_eq!(missing.status, 401);
        assert_eq!(missing.body, b"{\"error\":\"missing API key\"}\n");
        let unknown: String = key_a
            .chars()
            .map(|c| if c == 'f' { '0' } else { 'f' })
            .collect();
        for bad in [key_a.to_uppercase(), unknown] {
            let answer = node
                .ingest(Some(&bad), vec![simple_event("app-1", "u")])
                .await;
            assert_eq!(answer.status, 401, "{bad}");
            assert_eq!(answer.body, b"{\"error\":\"invalid API key\"}\n");
        }
        // Another app's app_id with this key: that event is rejected, the request is 200.
        let answer = node
            .ingest(
                Some(&key_b),
                vec![simple_event("app-1", "x"), simple_event("app-2", "y")],
            )
            .await;
        assert_eq!(answer.status, 200);
        let body = answer.json();
        assert_eq!(body["rejectedCount"], 1, "{body}");
        assert_eq!(body["results"][0]["status"], "rejected");
        assert_eq!(body["results"][1]["status"], "accepted");
    }

    // Both creations landed: each node lists both apps' keys.
    for node in [a, b] {
        for app in ["app-1", "app-2"] {
            let list = node
                .send(admin_request(
                    "GET",
                    &format!("/api/admin/keys?app_id={app}"),
                    Some(ADMIN_TOKEN),
                    None,
                ))
                .await;
            assert_eq!(list.json()["count"], 1, "{app}");
        }
    }

    // Revoked through a: a holds at once, b within 5 s.
    let revoked = a.revoke(&id_a).await;
    assert_eq!(revoked.status, 200);
    assert_eq!(revoked.json(), json!({"status": "revoked", "id": id_a}));
    let answer = a
        .ingest(Some(&key_a), vec![simple_event("app-1", "r")])
        .await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.body, b"{\"error\":\"invalid API key\"}\n");
    let took = b.until_status(&key_a, "app-1", 401, within).await;
    assert!(
        took < within,
        "revocation reached the other node after {took:?}"
    );
    // The other key is untouched.
    assert_eq!(
        b.ingest(Some(&key_b), vec![simple_event("app-2", "z")])
            .await
            .status,
        200
    );

    // No plaintext key anywhere: the key log and the events' streams.
    let bytes = stream_bytes(storage, &[KEY_LOG_STREAM, "ingest/app-1", "ingest/app-2"]).await;
    assert!(!bytes.is_empty());
    let text = String::from_utf8_lossy(&bytes);
    for key in [&key_a, &key_b] {
        assert!(!text.contains(key.as_str()), "a key is stored in plaintext");
        assert!(!text.contains(&key.to_uppercase()));
    }
    assert!(text.contains("\"type\":\"revoked\""), "{text}");
}
