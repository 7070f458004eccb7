//! The client SDK over the in-memory transport: welcome -> Connected, replies routed by
//! message id, a request cut off by a disconnect fails at once (no late reply from the old
//! connection), then the client reconnects with the policy and works on the new session.
//! A subscribe the server refuses with a retryable error, or does not answer, is tried again
//! after the policy's delay; a permanent refusal, or one still failing when the policy gives
//! up, reaches `on_error` once and is not retried.

use std::sync::{Arc, Mutex};
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

#[tokio::test(start_paused = true)]
async fn a_transiently_refused_subscribe_is_retried_after_the_policy_delay_a_permanent_one_is_not()
{
    const DELAY: Duration = Duration::from_secs(1);
    const REPLY_WAIT: Duration = Duration::from_secs(2);
    let (connector, mut acceptor) = in_memory_duplex(16);
    let (client, _events) = HubClient::builder("ws://unused")
        .client_id("sdk")
        .transport(Arc::new(connector))
        .reconnect(FixedDelay::new(DELAY))
        .request_timeout(REPLY_WAIT)
        .connect();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let applied: Arc<Mutex<Vec<String>>> = Arc::default();
    let subscription = |channel: &str| {
        let (errors, applied) = (errors.clone(), applied.clone());
        client
            .subscription_builder()
            .on_error(move |e| {
                errors
                    .lock()
                    .expect("lock")
                    .push(format!("{} {}", e.channel, e.code))
            })
            .on_applied(move |a| applied.lock().expect("lock").push(a.channel.clone()))
            .subscribe([channel])
    };
    let _feed = subscription("feed.a");
    let mut server = acceptor.accept().await.expect("connection");
    welcome(&mut server.connection, "n1").await;
    let subscribe = |request: &AppMessage, channel: &str| {
        assert_eq!(request.message_type, "subscribe", "{request:?}");
        assert_eq!(request.data["channel"], channel, "{request:?}");
    };
    let refuse = |request: &AppMessage, code: &str, retryable: bool| {
        let data = serde_json::json!({"code": code, "message": "no", "retryable": retryable});
        AppMessage::new(request.message_id, "error", data).to_json()
    };

    // Refused with a retryable error: asked again after the policy's delay, not before, and
    // with no error callback (the subscription is not failing for good).
    let first = next_request(&mut server.connection).await;
    subscribe(&first, "feed.a");
    send_text(
        &mut server.connection,
        refuse(&first, "history_unavailable", true),
    )
    .await;
    let refused_at = tokio::time::Instant::now();
    let second = next_request(&mut server.connection).await;
    subscribe(&second, "feed.a");
    let waited = refused_at.elapsed();
    assert!(
        waited >= DELAY && waited < DELAY * 2,
        "retried after {waited:?}"
    );

    // Not answered at all: given up on after the request timeout, then retried after the delay.
    let sent_at = tokio::time::Instant::now();
    let third = next_request(&mut server.connection).await;
    subscribe(&third, "feed.a");
    let waited = sent_at.elapsed();
    assert!(waited >= REPLY_WAIT + DELAY, "retried after {waited:?}");
    let reply = serde_json::json!({"channel": "feed.a"});
    send_text(
        &mut server.connection,
        AppMessage::new(third.message_id, "subscribed", reply).to_json(),
    )
    .await;
    let _denied = subscription("secret.x");
    let denied = next_request(&mut server.connection).await;
    subscribe(&denied, "secret.x");
    assert_eq!(*applied.lock().expect("lock"), ["feed.a"]);
    assert!(errors.lock().expect("lock").is_empty());

    // Refused for good: on_error once, and not asked again, neither later nor when another
    // subscription changes what the client wants.
    send_text(
        &mut server.connection,
        refuse(&denied, "permission_denied", false),
    )
    .await;
    let _chat = subscription("chat.b");
    let chat = next_request(&mut server.connection).await;
    subscribe(&chat, "chat.b");
    let reply = serde_json::json!({"channel": "chat.b"});
    let reply = AppMessage::new(chat.message_id, "subscribed", reply);
    send_text(&mut server.connection, reply.to_json()).await;
    let quiet = tokio::time::timeout(DELAY * 10, server.connection.receiver.recv()).await;
    assert!(quiet.is_err(), "nothing more asked, got {quiet:?}");
    assert_eq!(
        *errors.lock().expect("lock"),
        ["secret.x permission_denied"]
    );
    client.close();
}

#[tokio::test(start_paused = true)]
async fn a_subscribe_still_failing_when_the_policy_gives_up_reaches_on_error_once() {
    let (connector, mut acceptor) = in_memory_duplex(16);
    let (client, _events) = HubClient::builder("ws://unused")
        .client_id("sdk")
        .transport(Arc::new(connector))
        .reconnect(FixedDelay::new(Duration::from_secs(1)).max_retries(1))
        .connect();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = errors.clone();
    let _feed = client
        .subscription_builder()
        .on_error(move |e| sink.lock().expect("lock").push(e.message.clone()))
        .subscribe(["feed.a"]);
    let mut server = acceptor.accept().await.expect("connection");
    welcome(&mut server.connection, "n1").await;
    for attempt in ["first", "retry"] {
        let request = next_request(&mut server.connection).await;
        assert_eq!(request.data["channel"], "feed.a", "{attempt}: {request:?}");
        let data = serde_json::json!({"code": "history_unavailable", "message": attempt, "retryable": true});
        send_text(
            &mut server.connection,
            AppMessage::new(request.message_id, "error", data).to_json(),
        )
        .await;
    }
    let quiet = tokio::time::timeout(WAIT * 4, server.connection.receiver.recv()).await;
    assert!(quiet.is_err(), "not asked a third time, got {quiet:?}");
    let errors = errors.lock().expect("lock").clone();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("retry (not retrying"), "{errors:?}");
    client.close();
}
