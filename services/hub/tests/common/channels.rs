//! Channel helpers: a client on the in-memory fake speaking the hub's channel messages.

use courier_hub::{ClientGrants, ClientOptions, Hub};
use courier_impls::memory::duplex_pair;
use courier_traits::transport::{DuplexConnection, Frame as Wire};
use serde_json::{Value, json};

use super::next_text;

pub(crate) async fn connect_with(hub: &Hub, id: &str, grants: ClientGrants) -> DuplexConnection {
    let (client, server) = duplex_pair(64);
    hub.register_client(id, server, ClientOptions::default().with_grants(grants))
        .expect("registers");
    client
}

pub(crate) async fn connect(hub: &Hub, id: &str) -> DuplexConnection {
    connect_with(hub, id, ClientGrants::default()).await
}

pub(crate) async fn send(conn: &mut DuplexConnection, id: i64, kind: &str, data: Value) {
    let text = json!({ "message_id": id, "message_type": kind, "data": data }).to_string();
    conn.sender.send(Wire::Text(text)).await.expect("sends");
}

/// The next text frame, parsed, which must be the reply to request `id`.
pub(crate) async fn reply_to(conn: &mut DuplexConnection, id: i64) -> Value {
    let reply: Value = serde_json::from_str(&next_text(conn).await).expect("JSON");
    assert_eq!(reply["message_id"], id, "{reply}");
    reply
}

/// Sends a request and returns the reply (the next text frame).
pub(crate) async fn request(
    conn: &mut DuplexConnection,
    id: i64,
    kind: &str,
    data: Value,
) -> Value {
    send(conn, id, kind, data).await;
    reply_to(conn, id).await
}

pub(crate) async fn subscribe(conn: &mut DuplexConnection, channel: &str) {
    let reply = request(conn, 1, "subscribe", json!({ "channel": channel })).await;
    assert_eq!(reply["message_type"], "subscribed", "{reply}");
}

/// The next message, which must be a publication on `channel`; its data.
pub(crate) async fn publication(conn: &mut DuplexConnection, channel: &str) -> Value {
    let message: Value = serde_json::from_str(&next_text(conn).await).expect("JSON");
    assert_eq!(message["message_type"], "publication", "{message}");
    assert_eq!(message["data"]["channel"], channel, "{message}");
    message["data"]["data"].clone()
}

/// The data of the publications a `subscribed` reply recovered.
pub(crate) fn recovered_data(reply: &Value) -> Vec<Value> {
    reply["data"]["publications"]
        .as_array()
        .expect("publications")
        .iter()
        .map(|p| p["data"].clone())
        .collect()
}

/// A publication's (data, offset, epoch).
pub(crate) async fn stored_publication(
    conn: &mut DuplexConnection,
    channel: &str,
) -> (Value, String, String) {
    let message: Value = serde_json::from_str(&next_text(conn).await).expect("JSON");
    assert_eq!(message["message_type"], "publication", "{message}");
    let data = &message["data"];
    assert_eq!(data["channel"], channel, "{message}");
    let offset = data["offset"].as_str().expect("offset").to_owned();
    let epoch = data["epoch"].as_str().expect("epoch").to_owned();
    (data["data"].clone(), offset, epoch)
}

/// The next message, which must be a `join` or `leave` of `client` on `channel`.
pub(crate) async fn presence_event(
    conn: &mut DuplexConnection,
    kind: &str,
    channel: &str,
    client: &str,
) {
    let message: Value = serde_json::from_str(&next_text(conn).await).expect("JSON");
    assert_eq!(
        (
            &message["message_type"],
            &message["data"]["channel"],
            &message["data"]["client"]
        ),
        (&json!(kind), &json!(channel), &json!(client)),
        "{message}"
    );
}

pub(crate) fn members(hub: &Hub, channel: &str) -> Vec<(String, String)> {
    hub.presence(channel)
        .expect("presence channel")
        .into_iter()
        .map(|m| (m.client, m.node))
        .collect()
}

pub(crate) fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(c, n)| (c.to_string(), n.to_string()))
        .collect()
}
