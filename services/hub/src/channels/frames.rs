//! The frames channel deliveries are made of, and delivery to this node's subscribers: used by
//! the channel service and by the cluster link alike (kept apart from both so that neither
//! imports the other).

use serde_json::{Value, json};

use super::history::Placed;
use super::recovery::Live;
use super::table::SubscriptionTable;
use crate::Frame;
use crate::message::AppMessage;
use crate::registry::{BroadcastReport, Registry};

/// The `join` / `leave` event subscribers of a presence channel receive.
pub(crate) fn presence_event(joined: bool, channel: &str, client: &str) -> Frame {
    let kind = if joined { "join" } else { "leave" };
    let message = AppMessage::new(0, kind, json!({ "channel": channel, "client": client }));
    Frame::text(message.to_json())
}

/// The frame a publication reaches subscribers as; `placed` on history channels (`prev` lets
/// a node put publications arriving out of order back in order, and a client see a gap).
pub(crate) fn publication_frame(channel: &str, data: &Value, placed: Option<&Placed>) -> Frame {
    let mut body = json!({ "channel": channel, "data": data });
    if let Some(placed) = placed {
        body["offset"] = json!(placed.offset);
        body["epoch"] = json!(&*placed.epoch);
        body["prev"] = json!(placed.prev);
    }
    Frame::text(AppMessage::new(0, "publication", body).to_json())
}

/// Delivers `frame` to every local connection subscribed to `channel`, once each (held for
/// connections whose subscription to it is being set up).
pub(crate) fn deliver_local(
    table: &SubscriptionTable,
    registry: &Registry,
    channel: &str,
    frame: &Frame,
) -> BroadcastReport {
    let mut entries = table.matching(channel);
    let mut held = 0;
    entries.retain(|entry| match entry.recovery.live(channel, frame) {
        Live::Deliver => true,
        Live::Held => {
            held += 1;
            false
        }
        Live::Drop => false,
    });
    let mut report = registry.fan_out(entries, frame);
    report.delivered += held;
    report
}

/// Where a publication frame says it lies in its channel's stream (`data.prev`,
/// `data.offset`, `data.epoch`), if it does.
pub(crate) fn placed_of(frame: &Frame) -> Option<Placed> {
    let message: Value = serde_json::from_slice(frame.payload()).ok()?;
    let field = |name: &str| message["data"][name].as_str().map(str::to_owned);
    Some(Placed {
        prev: field("prev")?,
        offset: field("offset")?,
        epoch: field("epoch")?.into(),
    })
}
