//! The client SDK over the in-memory transport: welcome -> Connected, replies routed by
//! message id, a request cut off by a disconnect fails at once (no late reply from the old
//! connection), then the client reconnects with the policy and works on the new session.

use std::sync::Arc;
use std::time::Duration;

use courier_hub::AppMessage;
use courier_hub::sdk::{ClientError, Event, HubClient};
use courier_impls::memory::in_memory_duplex;
use courier_impls::retry::FixedDelay;
use courier_traits::transport::{DuplexConnection, Frame};

const WAIT: Duration = Duration::from_secs(5);

async fn welcome(conn: &mut DuplexConnection, node: &str) {
    let msg = AppMessage::new(
        0,
        "welcome",
        serde_json::json!({"client_id": "sdk", "node": node}),
    );
    send_text(conn, msg.to_json()).await;
}

async fn send_text(conn: &mut DuplexConnection, text: impl Into<String>) {
    conn.sender
        .send(Frame::Text(text.into()))
        .await
        .expect("the client's side is open");
}

async fn next_request(conn: &mut DuplexConnection) -> AppMessage {
    match tokio::time::timeout(WAIT, conn.receiver.recv()).await {
        Ok(Ok(Some(Frame::Text(text)))) => serde_json::from_str(&text).expect("json"),
        other => panic!("expected a request, got {other:?}"),
    }
}

#[tokio::test]
async fn replies_route_by_id_and_a_reconnect_drops_the_old_sessions_requests() {
    let (connector, mut acceptor) = in_memory_duplex(16);
    let (client, mut events) = HubClient::builder("ws://unused")
        .client_id("sdk")
        .transport(Arc::new(connector))
        .reconnect(FixedDelay::new(Duration::from_millis(50)))
        .request_timeout(WAIT)
        .connect();
    let mut first = acceptor.accept().await.expect("first connection");
    assert_eq!(first.target, "/ws?client_id=sdk");
    welcome(&mut first.connection, "n1").await;
    let event = tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("event");
    assert_eq!(
        event,
        Some(Event::Connected {
            client_id: "sdk".into(),
            node: "n1".into()
        })
    );

    // Two requests in flight; answered in reverse order, each reaches its own caller.
    let (c1, c2) = (client.clone(), client.clone());
    let r1 = tokio::spawn(async move { c1.request("ping", serde_json::json!(1)).await });
    let m1 = next_request(&mut first.connection).await;
    let r2 = tokio::spawn(async move { c2.request("ping", serde_json::json!(2)).await });
    let m2 = next_request(&mut first.connection).await;
    for m in [&m2, &m1] {
        let reply = AppMessage::new(m.message_id, "pong", m.data.clone());
        send_text(&mut first.connection, reply.to_json()).await;
    }
    assert_eq!(
        r1.await.expect("task").expect("reply").data,
        serde_json::json!(1)
    );
    assert_eq!(
        r2.await.expect("task").expect("reply").data,
        serde_json::json!(2)
    );

    // A non-reply frame is an event.
    send_text(&mut first.connection, "news").await;
    assert_eq!(
        events.recv().await,
        Some(Event::Message(Frame::Text("news".into())))
    );

    // A request whose connection dies fails with ConnectionLost at once.
    let c3 = client.clone();
    let r3 = tokio::spawn(async move { c3.request("ping", serde_json::json!(3)).await });
    let m3 = next_request(&mut first.connection).await;
    drop(first);
    assert!(matches!(
        r3.await.expect("task"),
        Err(ClientError::ConnectionLost)
    ));
    assert!(matches!(
        events.recv().await,
        Some(Event::Disconnected { .. })
    ));
    assert!(matches!(
        events.recv().await,
        Some(Event::Reconnecting { attempt: 1, .. })
    ));

    // New session: the same id answering the old request is not delivered to anyone.
    let mut second = acceptor.accept().await.expect("reconnect");
    welcome(&mut second.connection, "n2").await;
    assert!(matches!(events.recv().await, Some(Event::Connected { node, .. }) if node == "n2"));
    let stale = AppMessage::new(m3.message_id, "pong", serde_json::json!("stale"));
    send_text(&mut second.connection, stale.to_json()).await;
    // Not routed to a caller, so it shows up as a plain message event, once.
    match events.recv().await {
        Some(Event::Message(Frame::Text(text))) => assert!(text.contains("stale")),
        other => panic!("expected the stale reply as a message event, got {other:?}"),
    }
    let c4 = client.clone();
    let r4 = tokio::spawn(async move { c4.request("ping", serde_json::json!(4)).await });
    let m4 = next_request(&mut second.connection).await;
    let reply = AppMessage::new(m4.message_id, "pong", m4.data.clone());
    send_text(&mut second.connection, reply.to_json()).await;
    assert_eq!(
        r4.await.expect("task").expect("reply").data,
        serde_json::json!(4)
    );

    // Error replies become ClientError::Server.
    let c5 = client.clone();
    let r5 = tokio::spawn(async move { c5.request("launch", serde_json::Value::Null).await });
    let m5 = next_request(&mut second.connection).await;
    let error = AppMessage::new(
        m5.message_id,
        "error",
        serde_json::json!({"code": "unknown_message_type", "message": "no"}),
    );
    send_text(&mut second.connection, error.to_json()).await;
    assert!(
        matches!(r5.await.expect("task"), Err(ClientError::Server { code, .. }) if code == "unknown_message_type")
    );

    client.close();
    loop {
        match tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("closed event")
        {
            Some(Event::Closed { .. }) | None => break,
            Some(_) => {}
        }
    }
}
