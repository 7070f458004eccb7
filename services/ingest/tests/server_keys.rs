//! Keys in the storage's key log, on the in-memory storage: the admin API, the read routes,
//! I4 on two nodes, and a key log that cannot be read answering 503, never 401.

#![cfg(feature = "server")]

mod keys;

use std::sync::Arc;
use std::time::Duration;

use courier_impls::memory::MemoryStreamStorage;
use courier_ingest::server::{KEY_LOG_STREAM, TailConfig};
use courier_traits::storage::{StreamName, StreamStorage};
use keys::{
    ADMIN_TOKEN, admin_request, node, simple_event, two_nodes, two_nodes_share_one_key_log,
};
use serde_json::json;

fn memory() -> Arc<dyn StreamStorage> {
    Arc::new(MemoryStreamStorage::new())
}

#[tokio::test]
async fn the_admin_api_needs_a_configured_token_and_the_right_one() {
    let unconfigured = node(memory(), None, TailConfig::default()).await;
    let node = node(memory(), Some(ADMIN_TOKEN), TailConfig::default()).await;
    let create = || Some(json!({"app_id": "app-1", "name": "n"}));
    for (method, path) in [
        ("POST", "/api/admin/keys"),
        ("GET", "/api/admin/keys?app_id=app-1"),
        ("DELETE", "/api/admin/keys/x"),
        ("GET", "/v1/stream/ingest/app-1"),
    ] {
        let answer = unconfigured
            .send(admin_request(method, path, Some(ADMIN_TOKEN), create()))
            .await;
        assert_eq!(answer.status, 403, "{method} {path}");
        assert!(answer.json()["error"].is_string());
        for token in [None, Some("wrong"), Some("")] {
            let answer = node
                .send(admin_request(method, path, token, create()))
                .await;
            assert_eq!(answer.status, 401, "{method} {path} {token:?}");
            assert_eq!(answer.json(), json!({"error": "invalid admin token"}));
        }
    }
    // Another scheme with the right token is refused too.
    let basic = http::Request::get("/api/admin/keys?app_id=a")
        .header("authorization", format!("Basic {ADMIN_TOKEN}"))
        .body(axum::body::Body::empty())
        .expect("request");
    assert_eq!(node.send(basic).await.status, 401);
}

#[tokio::test]
async fn keys_are_created_listed_and_revoked_with_upstreams_bodies() {
    let node = node(memory(), Some(ADMIN_TOKEN), TailConfig::default()).await;
    let created = node
        .send(admin_request(
            "POST",
            "/api/admin/keys",
            Some(ADMIN_TOKEN),
            Some(json!({"app_id": "app-1", "name": "Production iOS"})),
        ))
        .await;
    assert_eq!(created.status, 201);
    assert_eq!(
        created.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
    let body = created.json();
    let fields: Vec<&str> = body
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(fields, ["app_id", "id", "key", "message", "name"]);
    let key = body["key"].as_str().expect("key");
    assert!(
        key.len() == 64
            && key
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{key}"
    );
    let id = body["id"].as_str().expect("id");
    assert_eq!(
        uuid::Uuid::parse_str(id).expect("uuid").get_version_num(),
        7
    );
    assert_eq!(body["app_id"], "app-1");
    assert_eq!(body["name"], "Production iOS");
    assert_eq!(
        body["message"],
        "Store this key securely. It will not be shown again."
    );
    // A name is optional, as upstream.
    let (second_id, _) = {
        let answer = node
            .send(admin_request(
                "POST",
                "/api/admin/keys",
                Some(ADMIN_TOKEN),
                Some(json!({"app_id": "app-1"})),
            ))
            .await;
        assert_eq!(answer.status, 201);
        let body = answer.json();
        assert_eq!(body["name"], "");
        (body["id"].as_str().expect("id").to_owned(), ())
    };

    let accepted = node
        .ingest(Some(key), vec![simple_event("app-1", "e1")])
        .await;
    assert_eq!(accepted.status, 200);
    assert_eq!(accepted.json()["acceptedCount"], 1);

    let list = node
        .send(admin_request(
            "GET",
            "/api/admin/keys?app_id=app-1",
            Some(ADMIN_TOKEN),
            None,
        ))
        .await;
    assert_eq!(list.status, 200);
    let list = list.json();
    assert_eq!(list["count"], 2);
    let first = &list["keys"][1];
    assert_eq!(first["id"], id);
    assert_eq!(first["revoked"], false);
    assert!(first.get("revoked_at").is_none(), "{first}");
    assert!(first.get("key").is_none() && first.get("sha256").is_none());
    let created_at = first["created_at"].as_str().expect("created_at");
    assert!(
        time::OffsetDateTime::parse(created_at, &time::format_description::well_known::Rfc3339)
            .is_ok(),
        "{created_at}"
    );
    assert_eq!(list["keys"][0]["id"], second_id.as_str(), "newest first");

    let revoked = node.revoke(id).await;
    assert_eq!(revoked.status, 200);
    assert_eq!(revoked.json(), json!({"status": "revoked", "id": id}));
    // Revoking again answers the same, unknown ids 404.
    assert_eq!(
        node.revoke(id).await.json(),
        json!({"status": "revoked", "id": id})
    );
    let unknown = node.revoke("0190f0f0-0000-7000-8000-000000000000").await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.json()["error"].is_string());

    let answer = node
        .ingest(Some(key), vec![simple_event("app-1", "e2")])
        .await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.body, b"{\"error\":\"invalid API key\"}\n");
    let list = node
        .send(admin_request(
            "GET",
            "/api/admin/keys?app_id=app-1",
            Some(ADMIN_TOKEN),
            None,
        ))
        .await
        .json();
    assert_eq!(list["keys"][1]["revoked"], true);
    assert!(list["keys"][1]["revoked_at"].is_string());
    assert_eq!(list["keys"][0]["revoked"], false);
}

#[tokio::test]
async fn bad_admin_input_is_400_naming_the_field() {
    let node = node(memory(), Some(ADMIN_TOKEN), TailConfig::default()).await;
    let post = |body: &str| {
        http::Request::post("/api/admin/keys")
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .body(axum::body::Body::from(body.to_owned()))
            .expect("request")
    };
    for (body, field) in [
        ("", "body"),
        ("{\"app_id\":", "body"),
        ("[]", "body"),
        ("{}", "app_id"),
        ("{\"app_id\":\"\"}", "app_id"),
        ("{\"app_id\":7}", "app_id"),
        ("{\"app_id\":\"app 1\"}", "app_id"),
        ("{\"app_id\":\"..\"}", "app_id"),
        (&format!("{{\"app_id\":\"{}\"}}", "a".repeat(129)), "app_id"),
        ("{\"app_id\":\"a\",\"name\":3}", "name"),
        (
            &format!("{{\"app_id\":\"a\",\"name\":\"{}\"}}", "n".repeat(257)),
            "name",
        ),
    ] {
        let answer = node.send(post(body)).await;
        assert_eq!(answer.status, 400, "{body}");
        let error = answer.json()["error"].as_str().expect("error").to_owned();
        assert!(error.contains(field), "{body}: {error}");
    }
    for path in [
        "/api/admin/keys",
        "/api/admin/keys?app_id=",
        "/api/admin/keys?other=1",
    ] {
        let answer = node
            .send(admin_request("GET", path, Some(ADMIN_TOKEN), None))
            .await;
        assert_eq!(answer.status, 400, "{path}");
        assert!(
            answer.json()["error"]
                .as_str()
                .expect("error")
                .contains("app_id")
        );
    }
    let list = node.keys.log().list(None).await.expect("list");
    assert!(list.is_empty(), "nothing was created: {list:?}");
}

#[tokio::test]
async fn events_are_read_through_the_streams_protocol_read_only() {
    let storage = memory();
    let node = node(
        Arc::clone(&storage),
        Some(ADMIN_TOKEN),
        TailConfig::default(),
    )
    .await;
    let (_, key) = node.create_key("app-1").await;
    let stored = node
        .ingest(
            Some(&key),
            vec![simple_event("app-1", "e1"), simple_event("app-1", "e2")],
        )
        .await;
    assert_eq!(stored.status, 200);

    let read = node
        .send(admin_request(
            "GET",
            "/v1/stream/ingest/app-1?offset=-1",
            Some(ADMIN_TOKEN),
            None,
        ))
        .await;
    assert_eq!(read.status, 200, "{}", String::from_utf8_lossy(&read.body));
    let events = read.json();
    assert_eq!(events.as_array().map(Vec::len), Some(2), "{events}");
    assert_eq!(events[0]["event_type"], "signup");
    assert!(read.headers.contains_key("stream-next-offset"));
    let head = node
        .send(admin_request(
            "HEAD",
            "/v1/stream/ingest/app-1",
            Some(ADMIN_TOKEN),
            None,
        ))
        .await;
    assert_eq!(head.status, 200);

    for method in ["POST", "PUT", "DELETE"] {
        let answer = node
            .send(admin_request(
                method,
                "/v1/stream/ingest/app-1",
                Some(ADMIN_TOKEN),
                Some(json!(["forged"])),
            ))
            .await;
        assert_eq!(answer.status, 405, "{method}");
    }
    // The key log and other streams are not served.
    for path in [
        "/v1/stream/ingest-admin/keys?offset=-1",
        "/v1/stream/other?offset=-1",
    ] {
        let answer = node
            .send(admin_request("GET", path, Some(ADMIN_TOKEN), None))
            .await;
        assert_eq!(answer.status, 404, "{path}");
    }
    let unauthenticated = node
        .send(admin_request(
            "GET",
            "/v1/stream/ingest/app-1?offset=-1",
            None,
            None,
        ))
        .await;
    assert_eq!(unauthenticated.status, 401);
    // Still two events: nothing was written through the read routes.
    let after = node
        .send(admin_request(
            "GET",
            "/v1/stream/ingest/app-1?offset=-1",
            Some(ADMIN_TOKEN),
            None,
        ))
        .await;
    assert_eq!(after.json().as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn i4_on_two_nodes_sharing_one_memory_storage() {
    let storage = memory();
    let (a, b) = two_nodes(&storage).await;
    two_nodes_share_one_key_log(&a, &b, &*storage).await;
}

/// The key log's stream deleted under the node: its reads fail, and once the table is older
/// than `max_staleness` a known key gets 503 with `Retry-After`, not 401 (a client would drop
/// its events on 401).
#[tokio::test(start_paused = true)]
async fn an_unreadable_key_log_is_503_never_401() {
    let storage = memory();
    let tail = TailConfig::default()
        .with_refresh(Duration::from_millis(200))
        .with_max_staleness(Duration::from_secs(3));
    let node = node(Arc::clone(&storage), Some(ADMIN_TOKEN), tail).await;
    let (_, key) = node.create_key("app-1").await;
    assert_eq!(node.status_of_one(&key, "app-1", "a").await, 200);
    storage
        .delete(&StreamName::new(KEY_LOG_STREAM).expect("name"))
        .await
        .expect("deleted");
    // Within the staleness bound the table answers; past it, 503.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(node.status_of_one(&key, "app-1", "b").await, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let answer = node
        .ingest(Some(&key), vec![simple_event("app-1", "c")])
        .await;
    assert_eq!(
        answer.status,
        503,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(
        answer.headers.get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    // The admin API says the same.
    let create = node
        .send(admin_request(
            "POST",
            "/api/admin/keys",
            Some(ADMIN_TOKEN),
            Some(json!({"app_id": "app-1"})),
        ))
        .await;
    assert_eq!(create.status, 503);
    // A malformed key is still 401 without asking the log.
    let malformed = node
        .ingest(Some("nope"), vec![simple_event("app-1", "d")])
        .await;
    assert_eq!(malformed.status, 401);
}

/// `close` stops the tail task: keys created afterwards through another node are never seen,
/// and the table goes stale (503).
#[tokio::test(start_paused = true)]
async fn close_stops_the_tail_task() {
    let storage = memory();
    let (a, b) = two_nodes(&storage).await;
    tokio::time::timeout(Duration::from_secs(1), b.keys.close())
        .await
        .expect("close returns at once");
    let (_, key) = a.create_key("app-1").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        b.status_of_one(&key, "app-1", "a").await,
        401,
        "not followed any more"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(b.status_of_one(&key, "app-1", "b").await, 503);
    assert_eq!(a.status_of_one(&key, "app-1", "c").await, 200);
}

#[tokio::test]
async fn shutdown_ends_open_event_reads_instead_of_waiting_out_their_long_poll() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let storage = memory();
    let node = node(
        Arc::clone(&storage),
        Some(ADMIN_TOKEN),
        TailConfig::default(),
    )
    .await;
    let (_, key) = node.create_key("app-1").await;
    let stored = node
        .ingest(Some(&key), vec![simple_event("app-1", "e1")])
        .await;
    assert_eq!(stored.status, 200);
    let head = node
        .send(admin_request(
            "HEAD",
            "/v1/stream/ingest/app-1",
            Some(ADMIN_TOKEN),
            None,
        ))
        .await;
    let tail = head.headers["stream-next-offset"]
        .to_str()
        .expect("ascii")
        .to_owned();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(node.server.clone().serve(listener, async move {
        let _ = stopped.await;
    }));
    // A long-poll at the tail: it waits for data (30 s by default) until shutdown ends it.
    let mut reader = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET /v1/stream/ingest/app-1?offset={tail}&live=long-poll HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {ADMIN_TOKEN}\r\n\r\n"
    );
    reader.write_all(request.as_bytes()).await.expect("request");
    // Let the request reach its wait: a shutdown before it was accepted proves nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = stop.send(());
    let served = tokio::time::timeout(Duration::from_secs(5), server).await;
    assert!(
        served.is_ok(),
        "shutdown waited for the long-poll's own timeout"
    );
    let mut answer = vec![0u8; 512];
    let read = tokio::time::timeout(Duration::from_secs(1), reader.read(&mut answer))
        .await
        .expect("the reader was answered")
        .expect("read");
    assert!(
        answer[..read].starts_with(b"HTTP/1.1 "),
        "{}",
        String::from_utf8_lossy(&answer[..read])
    );
}
