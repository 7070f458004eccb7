//! Channels: clients subscribe to channel names or patterns, and a publication to a channel
//! reaches every connection with a matching subscription once, on every node.
//!
//! Client messages (JSON [`AppMessage`]s, answered with the request's `message_id`):
//!
//! | `message_type` | `data` | reply |
//! |---|---|---|
//! | `subscribe` | `{"channel": "chat.*"}` | `subscribed` `{"channel"}` or `error` |
//! | `unsubscribe` | `{"channel": "chat.*"}` | `unsubscribed` `{"channel", "was_subscribed"}` |
//! | `publish` | `{"channel": "chat.room1", "data": any}` | `published` `{"channel", "delivered"}` or `error` |
//!
//! A publication arrives as `{"message_type": "publication", "message_id": 0, "data":
//! {"channel": "chat.room1", "data": ...}}`, once per connection however many of its
//! subscriptions match (the client matches it to its own subscriptions). Across nodes it
//! travels on the broadcast topic with an envelope id, so the cluster's exactly-once
//! delivery of broadcasts holds for it too.

mod pattern;
mod rules;
pub(crate) mod table;

use std::sync::Arc;

use serde_json::{Value, json};

use crate::Frame;
use crate::client::ClientEntry;
use crate::cluster::Cluster;
use crate::error::HubError;
use crate::message::AppMessage;
use crate::registry::{BroadcastReport, Registry};
pub use pattern::{ChannelPattern, MAX_CHANNEL_LEN, validate_channel};
pub(crate) use rules::rule_for;
pub use rules::{ChannelRule, ClientGrants};
use table::SubscriptionTable;

/// The message types the hub answers itself (unless the dispatcher has a handler of its own
/// for one, which then wins: existing applications keep their meaning of these names).
pub(crate) fn is_channel_message(message_type: &str) -> bool {
    matches!(message_type, "subscribe" | "unsubscribe" | "publish")
}

/// The frame a publication reaches subscribers as.
pub(crate) fn publication_frame(channel: &str, data: &Value) -> Frame {
    let message = AppMessage::new(
        0,
        "publication",
        json!({ "channel": channel, "data": data }),
    );
    Frame::text(message.to_json())
}

/// Delivers `frame` to every local connection subscribed to `channel`, once each.
pub(crate) fn deliver_local(
    table: &SubscriptionTable,
    registry: &Registry,
    channel: &str,
    frame: &Frame,
) -> BroadcastReport {
    registry.fan_out(table.matching(channel), frame)
}

/// This node's channel service: subscriptions, rules, publishing here and to other nodes.
pub(crate) struct Channels {
    pub(crate) table: Arc<SubscriptionTable>,
    pub(crate) rules: Vec<ChannelRule>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) cluster: Option<Arc<Cluster>>,
    pub(crate) max_message_bytes: usize,
}

impl Channels {
    /// Publishes `data` to `channel`: local subscribers now, other nodes through the bus.
    pub(crate) async fn publish(
        &self,
        channel: &str,
        data: &Value,
    ) -> Result<BroadcastReport, HubError> {
        validate_channel(channel)?;
        let frame = publication_frame(channel, data);
        let size = frame.payload().len();
        if size > self.max_message_bytes {
            return Err(HubError::FrameTooLarge {
                size,
                limit: self.max_message_bytes,
            });
        }
        let mut report = deliver_local(&self.table, &self.registry, channel, &frame);
        if let Some(cluster) = &self.cluster {
            report.published = cluster.publish_channel(channel, &frame).await;
        }
        Ok(report)
    }

    /// Answers a client's `subscribe`, `unsubscribe` or `publish`.
    pub(crate) async fn handle(
        &self,
        entry: &Arc<ClientEntry>,
        message: AppMessage,
    ) -> Option<AppMessage> {
        let id = message.message_id;
        let Some(channel) = message.data.get("channel").and_then(Value::as_str) else {
            return Some(refusal(
                id,
                "bad_message",
                "data.channel (a string) is required",
            ));
        };
        let reply = match message.message_type.as_str() {
            "subscribe" => self.subscribe(entry, channel),
            "unsubscribe" => {
                let was = self.table.unsubscribe(entry.conn_id, channel);
                Ok(AppMessage::new(
                    id,
                    "unsubscribed",
                    json!({ "channel": channel, "was_subscribed": was }),
                ))
            }
            _ => {
                let data = message.data.get("data").cloned().unwrap_or(Value::Null);
                self.client_publish(entry, channel, &data).await
            }
        };
        Some(match reply {
            Ok(mut reply) => {
                reply.message_id = id;
                reply
            }
            Err((code, text)) => refusal(id, code, &text),
        })
    }

    fn subscribe(
        &self,
        entry: &Arc<ClientEntry>,
        channel: &str,
    ) -> Result<AppMessage, (&'static str, String)> {
        let pattern = ChannelPattern::parse(channel).map_err(|e| ("bad_channel", e.to_string()))?;
        if !entry.grants.may_subscribe(&pattern) {
            return Err((
                "permission_denied",
                format!("the token does not allow subscribing to {channel:?}"),
            ));
        }
        self.table.subscribe(entry, pattern);
        Ok(AppMessage::new(
            0,
            "subscribed",
            json!({ "channel": channel }),
        ))
    }

    async fn client_publish(
        &self,
        entry: &ClientEntry,
        channel: &str,
        data: &Value,
    ) -> Result<AppMessage, (&'static str, String)> {
        validate_channel(channel).map_err(|e| ("bad_channel", e.to_string()))?;
        let allowed_here = rule_for(&self.rules, channel).is_some_and(|r| r.client_publish);
        if !allowed_here || !entry.grants.may_publish(channel) {
            return Err((
                "permission_denied",
                format!("clients may not publish to {channel:?}"),
            ));
        }
        let report = self
            .publish(channel, data)
            .await
            .map_err(|e| ("publish_failed", e.to_string()))?;
        Ok(AppMessage::new(
            0,
            "published",
            json!({ "channel": channel, "delivered": report.delivered }),
        ))
    }
}

fn refusal(message_id: i64, code: &str, text: &str) -> AppMessage {
    AppMessage::new(
        message_id,
        "error",
        json!({ "code": code, "message": text }),
    )
}
