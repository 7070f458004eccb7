//! Channels: clients subscribe to channel names or patterns, and a publication to a channel
//! reaches every connection with a matching subscription once, on every node.
//!
//! Client messages (JSON [`AppMessage`]s, answered with the request's `message_id`):
//!
//! | `message_type` | `data` | reply |
//! |---|---|---|
//! | `subscribe` | `{"channel": "chat.*"}`, on a history channel optionally `"since": {"offset", "epoch"}` | `subscribed` or `error` |
//! | `unsubscribe` | `{"channel": "chat.*"}` | `unsubscribed` `{"channel", "was_subscribed"}` |
//! | `publish` | `{"channel": "chat.room1", "data": any}` | `published` `{"channel", "delivered"}` or `error` |
//! | `presence` | `{"channel": "room.1"}` | `presence` `{"channel", "members": [{"client", "node"}]}` or `error` |
//!
//! An `error` reply carries `code`, `message` and `retryable`: true when asking again later
//! may succeed (`history_unavailable`: the history storage could not be read), false for a
//! refusal (`permission_denied`, `bad_channel`, ...).
//!
//! On a channel whose rule asks for presence, subscribers receive `join` / `leave`
//! `{"channel", "client"}` when a client subscribes to it by its exact name or leaves (on any
//! node; see [`presence`] for how fast other nodes learn it).
//!
//! A publication arrives as `{"message_type": "publication", "message_id": 0, "data":
//! {"channel": "chat.room1", "data": ..., "offset": "..", "epoch": "..", "prev": ".."}}`
//! (offset, epoch and `prev`, the offset before it, on history channels only; there they
//! arrive in the order of the channel's stream, see [`order`]), once per connection however
//! many of its subscriptions match
//! (the client matches it to its own subscriptions). Across nodes it travels on the broadcast
//! topic with an envelope id, so the cluster's exactly-once delivery of broadcasts holds for
//! it too.
//!
//! On a history channel (a [`ChannelRule`] with [`HistoryLimits`], exact names only) the
//! `subscribed` reply carries `epoch` and `offset` (where the client stands); with `since` it
//! also carries `recovered: true` and `publications: [{"offset", "data"}, ...]` — everything
//! published after `since`, in order — or `recovered: false, resync: true, reason` when the
//! history no longer reaches back (or what was missed is too large for one message). Live publications that arrive while the reply is prepared
//! are held and follow it, without those already in `publications`: each publication
//! reaches the client once, in order.

mod frames;
mod history;
mod order;
mod pattern;
pub(crate) mod presence;
pub(crate) mod recovery;
mod rules;
pub(crate) mod table;

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::Frame;
use crate::client::ClientEntry;
use crate::cluster::Cluster;
use crate::error::HubError;
use crate::message::AppMessage;
use crate::registry::{BroadcastReport, Registry};
pub(crate) use frames::{deliver_local, presence_event, publication_frame};
pub(crate) use history::History;
pub use history::HistoryLimits;
use history::Recovery;
pub(crate) use order::Sequencer;
pub use pattern::{ChannelPattern, MAX_CHANNEL_LEN, validate_channel};
use presence::PresenceBook;
pub(crate) use rules::rule_for;
pub use rules::{ChannelRule, ClientGrants};
use table::SubscriptionTable;

/// The message types the hub answers itself (unless the dispatcher has a handler of its own
/// for one, which then wins: existing applications keep their meaning of these names).
pub(crate) fn is_channel_message(message_type: &str) -> bool {
    matches!(
        message_type,
        "subscribe" | "unsubscribe" | "publish" | "presence"
    )
}

/// A member of a presence channel.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Member {
    /// The client's id.
    pub client: String,
    /// The node it is connected to.
    pub node: String,
}

/// This node's channel service: subscriptions, rules, history, publishing here and to other
/// nodes.
pub(crate) struct Channels {
    pub(crate) table: Arc<SubscriptionTable>,
    pub(crate) rules: Vec<ChannelRule>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) cluster: Option<Arc<Cluster>>,
    pub(crate) history: Option<Arc<History>>,
    /// Delivers history channels' publications in stream order.
    pub(crate) sequencer: Arc<Sequencer>,
    pub(crate) presence: Arc<PresenceBook>,
    pub(crate) node_id: Arc<str>,
    pub(crate) max_message_bytes: usize,
}

type Refusal = (&'static str, String);

impl Channels {
    /// Tells local subscribers and the other nodes that `client` joined or left `channel`,
    /// if the channel tracks presence. Only exact subscriptions are members: a pattern such as
    /// `room.*` also matches a `room.*` rule, and must not announce itself as a channel.
    /// Called when the client's first connection here joins or its last one leaves; other
    /// nodes always hear of it (they count per node), local subscribers only when no other
    /// node holds the client (a client reconnecting elsewhere before its old connection here
    /// ends has not left).
    fn presence_changed(&self, joined: bool, channel: &str, client: &str) {
        let exact = ChannelPattern::parse(channel).is_ok_and(|p| p.is_exact());
        if !exact || !self.presence.tracks(channel) {
            return;
        }
        if self.presence.nodes_holding(channel, client) == 0 {
            let event = presence_event(joined, channel, client);
            deliver_local(&self.table, &self.registry, channel, &event);
        }
        if let Some(cluster) = &self.cluster {
            cluster.announce_channel(joined, channel, client);
        }
    }

    /// A connection ended: its subscriptions go, and it leaves its presence channels.
    pub(crate) fn connection_ended(&self, entry: &ClientEntry) {
        for pattern in self.table.remove_connection(entry.conn_id) {
            self.presence_changed(false, &pattern, &entry.id);
        }
    }

    /// Who is subscribed to presence channel `channel`, on every node (as this node knows).
    pub(crate) fn members(&self, channel: &str) -> Result<Vec<Member>, HubError> {
        validate_channel(channel)?;
        if !self.presence.tracks(channel) {
            return Err(courier_traits::InvalidInput::new(
                "channel",
                channel,
                "no channel rule with presence matches it",
            )
            .into());
        }
        let mut members: Vec<Member> = self
            .table
            .exact_members(channel)
            .into_iter()
            .map(|client| Member {
                client: client.to_string(),
                node: self.node_id.to_string(),
            })
            .chain(
                self.presence
                    .remote_members(channel)
                    .into_iter()
                    .map(|(client, node)| Member { client, node }),
            )
            .collect();
        members.sort_by(|a, b| (&a.client, &a.node).cmp(&(&b.client, &b.node)));
        Ok(members)
    }

    /// The history limits of `channel`, when it keeps one and a storage is configured.
    fn history_of(&self, channel: &str) -> Option<(&History, HistoryLimits)> {
        let limits = rule_for(&self.rules, channel)?.history?;
        Some((self.history.as_ref()?, limits))
    }

    /// Publishes `data` to `channel`: into its history first (if it keeps one), then to
    /// local subscribers now and to other nodes through the bus.
    pub(crate) async fn publish(
        &self,
        channel: &str,
        data: &Value,
    ) -> Result<BroadcastReport, HubError> {
        validate_channel(channel)?;
        // Checked before storing: a publication too large to send must not enter history.
        // (Room for the offsets and epoch a history channel adds.)
        let size = publication_frame(channel, data, None).payload().len() + 160;
        if size > self.max_message_bytes {
            return Err(HubError::FrameTooLarge {
                size,
                limit: self.max_message_bytes,
            });
        }
        let (frame, mut report) = match self.history_of(channel) {
            Some((history, limits)) => {
                let placed = history.append(channel, limits, data).await?;
                let frame = publication_frame(channel, data, Some(&placed));
                let report = self.sequencer.arrive(channel, &frame, placed);
                (frame, report)
            }
            None => {
                let frame = publication_frame(channel, data, None);
                let report = deliver_local(&self.table, &self.registry, channel, &frame);
                (frame, report)
            }
        };
        if let Some(cluster) = &self.cluster {
            report.published = cluster.publish_channel(channel, &frame).await;
        }
        Ok(report)
    }

    /// Answers a client's `subscribe`, `unsubscribe`, `publish` or `presence` (`None` when
    /// the reply was already queued).
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
            "subscribe" => match self.subscribe(entry, id, channel, &message.data).await {
                Ok(()) => return None,
                Err(refused) => Err(refused),
            },
            "presence" => self.presence_of(entry, channel),
            "unsubscribe" => {
                let changed = self.table.unsubscribe(entry.conn_id, channel);
                entry.recovery.clear_floor(channel);
                if changed.client {
                    self.presence_changed(false, channel, &entry.id);
                }
                Ok(AppMessage::new(
                    id,
                    "unsubscribed",
                    json!({ "channel": channel, "was_subscribed": changed.connection }),
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

    async fn subscribe(
        &self,
        entry: &Arc<ClientEntry>,
        id: i64,
        channel: &str,
        data: &Value,
    ) -> Result<(), Refusal> {
        let pattern = ChannelPattern::parse(channel).map_err(|e| ("bad_channel", e.to_string()))?;
        if !entry.grants.may_subscribe(&pattern) {
            return Err((
                "permission_denied",
                format!("the token does not allow subscribing to {channel:?}"),
            ));
        }
        let history = match pattern.is_exact() {
            true => self.history_of(channel),
            false => None,
        };
        let Some((history, limits)) = history else {
            let changed = self.table.subscribe(entry, pattern);
            // The reply goes before the client's own join event.
            let reply = AppMessage::new(id, "subscribed", json!({ "channel": channel }));
            self.offer(entry, Frame::text(reply.to_json()));
            if changed.client {
                self.presence_changed(true, channel, &entry.id);
            }
            return Ok(());
        };
        // Live publications are held from before the subscription starts until the reply is
        // queued, so none is lost between reading history and going live.
        entry.recovery.begin(channel);
        let changed = self.table.subscribe(entry, pattern);
        let since = data.get("since").and_then(|since| {
            Some((
                since.get("offset")?.as_str()?.to_owned(),
                since.get("epoch")?.as_str()?.to_owned(),
            ))
        });
        let outcome = async {
            let position = history.position(channel, limits).await?;
            let recovery = match &since {
                Some((offset, epoch)) => Some(
                    history
                        .recover(channel, limits, &position.epoch, epoch, offset)
                        .await?,
                ),
                None => None,
            };
            Ok::<_, HubError>((position, recovery))
        }
        .await;
        let (position, recovery) = match outcome {
            Ok(found) => {
                self.sequencer
                    .start_at(channel, &found.0.epoch, &found.0.tail);
                found
            }
            Err(e) => {
                entry.recovery.finish(channel, |_, _| ());
                if changed.connection {
                    self.table.unsubscribe(entry.conn_id, channel);
                }
                return Err(("history_unavailable", e.to_string()));
            }
        };
        let mut body = json!({
            "channel": channel,
            "epoch": &*position.epoch,
            "offset": &position.tail,
        });
        // Held publications already in the reply (or before where the client stands) are
        // dropped; the rest follow the reply in order.
        let mut skip: HashSet<String> = HashSet::new();
        let mut floor = Some(position.tail.clone());
        match recovery {
            None => {}
            Some(Recovery::Recovered(publications)) => {
                floor = since.as_ref().map(|(offset, _)| offset.clone());
                skip.extend(publications.iter().map(|p| p.offset.clone()));
                let last = publications.last().map(|p| p.offset.clone());
                body["recovered"] = json!(true);
                body["publications"] = publications
                    .into_iter()
                    .map(|p| json!({ "offset": p.offset, "data": p.data }))
                    .collect();
                if let Some(last) = last.filter(|last| *last > position.tail) {
                    body["offset"] = json!(last);
                }
            }
            Some(Recovery::Resync(reason)) => {
                body["recovered"] = json!(false);
                body["resync"] = json!(true);
                body["reason"] = json!(reason);
            }
        }
        let client_has = body["offset"].as_str().map(str::to_owned);
        let reply = AppMessage::new(id, "subscribed", body);
        entry.recovery.finish(channel, |held, overflowed| {
            let mut reply = reply;
            if overflowed {
                reply.data["recovered"] = json!(false);
                reply.data["resync"] = json!(true);
                reply.data["reason"] = json!("too many publications arrived during recovery");
            }
            self.offer(entry, Frame::text(reply.to_json()));
            for (frame, spot) in held {
                let already = spot.as_ref().is_some_and(|(their_epoch, offset)| {
                    **their_epoch == *position.epoch
                        && (skip.contains(offset)
                            || floor.as_ref().is_some_and(|floor| offset <= floor))
                });
                if !already {
                    self.offer(entry, frame);
                }
            }
            // Under the same lock as the release: no live copy slips in between.
            if let Some(floor) = client_has {
                let epoch = position.epoch.to_string();
                entry.recovery.set_floor(channel, (epoch, floor));
            }
        });
        if changed.client {
            self.presence_changed(true, channel, &entry.id);
        }
        Ok(())
    }

    fn presence_of(&self, entry: &ClientEntry, channel: &str) -> Result<AppMessage, Refusal> {
        let pattern = ChannelPattern::parse(channel).map_err(|e| ("bad_channel", e.to_string()))?;
        if !entry.grants.may_subscribe(&pattern) {
            return Err((
                "permission_denied",
                format!("the token does not allow {channel:?}"),
            ));
        }
        let members = self
            .members(channel)
            .map_err(|e| ("no_presence", e.to_string()))?;
        Ok(AppMessage::new(
            0,
            "presence",
            json!({ "channel": channel, "members": members }),
        ))
    }

    /// Queues for one client (drops and evictions are counted by the registry).
    fn offer(&self, entry: &ClientEntry, frame: Frame) {
        self.registry.offer(entry, frame);
    }

    async fn client_publish(
        &self,
        entry: &ClientEntry,
        channel: &str,
        data: &Value,
    ) -> Result<AppMessage, Refusal> {
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

/// Refusal codes that may succeed when asked again later (the SDK retries them with backoff).
const RETRYABLE_CODES: [&str; 1] = ["history_unavailable"];

fn refusal(message_id: i64, code: &str, text: &str) -> AppMessage {
    let retryable = RETRYABLE_CODES.contains(&code);
    AppMessage::new(
        message_id,
        "error",
        json!({ "code": code, "message": text, "retryable": retryable }),
    )
}
