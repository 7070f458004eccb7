//! [`Dispatcher`]: routes JSON messages from clients to handlers by `message_type`.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;

use crate::message::{AppMessage, now_ms};

/// Who sent a message.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// The sending client's id.
    pub client_id: Arc<str>,
    /// The node it is connected to.
    pub node_id: Arc<str>,
}

/// Handles one `message_type`. The returned message (if any) is sent back to the client.
#[async_trait]
pub trait Handler: Send + Sync {
    /// Handles `message`; the reply should carry the request's `message_id`.
    async fn handle(&self, ctx: &RequestContext, message: AppMessage) -> Option<AppMessage>;
}

/// Answers `ping` with `pong` carrying the server's clock (`data.server_ts`, ms).
#[derive(Debug, Default)]
pub struct PingHandler;

#[async_trait]
impl Handler for PingHandler {
    async fn handle(&self, ctx: &RequestContext, message: AppMessage) -> Option<AppMessage> {
        Some(AppMessage::new(
            message.message_id,
            "pong",
            json!({ "server_ts": now_ms(), "node": &*ctx.node_id }),
        ))
    }
}

/// Routes messages by type. Unknown types and malformed JSON get an `error` reply; the
/// connection stays open.
///
/// ```
/// use courier_hub::dispatcher::{Dispatcher, PingHandler};
/// let dispatcher = Dispatcher::new().handler("ping", PingHandler);
/// assert!(dispatcher.handles("ping"));
/// ```
#[derive(Clone, Default)]
pub struct Dispatcher {
    handlers: HashMap<String, Arc<dyn Handler>>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("types", &self.handlers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Dispatcher {
    /// A dispatcher with no handlers.
    pub fn new() -> Dispatcher {
        Dispatcher::default()
    }

    /// The standard handlers: `ping`.
    pub fn standard() -> Dispatcher {
        Dispatcher::new().handler("ping", PingHandler)
    }

    /// Adds (or replaces) the handler of `message_type`.
    pub fn handler(mut self, message_type: &str, handler: impl Handler + 'static) -> Dispatcher {
        self.handlers
            .insert(message_type.to_owned(), Arc::new(handler));
        self
    }

    /// Whether `message_type` has a handler.
    pub fn handles(&self, message_type: &str) -> bool {
        self.handlers.contains_key(message_type)
    }

    /// Parses and routes one client frame; returns the reply to send, if any.
    pub async fn dispatch(&self, ctx: &RequestContext, bytes: &[u8]) -> Option<AppMessage> {
        match Dispatcher::parse(bytes) {
            Ok(message) => self.dispatch_message(ctx, message).await,
            Err(refusal) => Some(refusal),
        }
    }

    /// Parses one client frame, or the `error` reply for a malformed one.
    pub fn parse(bytes: &[u8]) -> Result<AppMessage, AppMessage> {
        serde_json::from_slice(bytes).map_err(|e| {
            error_reply(
                0,
                "bad_message",
                &format!(
                    "expected JSON {{\"message_id\": int, \"message_type\": string, \"data\": any}}: {e}"
                ),
            )
        })
    }

    /// Routes a parsed message; returns the reply to send, if any.
    pub async fn dispatch_message(
        &self,
        ctx: &RequestContext,
        message: AppMessage,
    ) -> Option<AppMessage> {
        match self.handlers.get(&message.message_type) {
            Some(handler) => handler.handle(ctx, message).await,
            None => Some(error_reply(
                message.message_id,
                "unknown_message_type",
                &format!("no handler for message_type {:?}", message.message_type),
            )),
        }
    }
}

fn error_reply(message_id: i64, code: &str, text: &str) -> AppMessage {
    AppMessage::new(
        message_id,
        "error",
        json!({ "code": code, "message": text }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RequestContext {
        RequestContext {
            client_id: "c1".into(),
            node_id: "n1".into(),
        }
    }

    #[tokio::test]
    async fn ping_gets_pong_with_the_same_id() {
        let d = Dispatcher::standard();
        let reply = d
            .dispatch(
                &ctx(),
                br#"{"message_id":7,"message_type":"ping","data":null,"ts":1}"#,
            )
            .await
            .expect("reply");
        assert_eq!(reply.message_id, 7);
        assert_eq!(reply.message_type, "pong");
        assert!(reply.data["server_ts"].as_i64().unwrap_or(0) > 0);
    }

    #[tokio::test]
    async fn unknown_type_and_bad_json_get_errors() {
        let d = Dispatcher::standard();
        let reply = d
            .dispatch(&ctx(), br#"{"message_id":3,"message_type":"launch"}"#)
            .await
            .expect("reply");
        assert_eq!(reply.message_type, "error");
        assert_eq!(reply.message_id, 3);
        assert_eq!(reply.data["code"], "unknown_message_type");
        let reply = d.dispatch(&ctx(), b"not json").await.expect("reply");
        assert_eq!(reply.data["code"], "bad_message");
    }
}
