//! [`RecoveryBuffers`]: live publications held back for a connection while its subscription
//! to a history channel is being set up, so the subscribe reply (with what it recovered)
//! comes first and nothing is delivered twice or out of order around it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::Frame;
use crate::locks::lock;

/// Live publications held per channel, at most this many; past it the subscription answers
/// resync (what was dropped is still in history).
pub(crate) const MAX_HELD: usize = 1024;

#[derive(Default)]
struct Held {
    frames: Vec<(Frame, Option<Spot>)>,
    overflowed: bool,
}

/// What to do with a live publication for one connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Live {
    /// Queue it now.
    Deliver,
    /// Kept until the subscription is set up.
    Held,
    /// Already given to the client (recovered, or before where its subscription started).
    Drop,
}

/// One connection's channels being set up, and where its history subscriptions started.
#[derive(Default)]
pub(crate) struct RecoveryBuffers {
    /// How many channels are held or have a floor: the delivery path checks it without
    /// taking the lock.
    active: AtomicUsize,
    held: Mutex<HashMap<String, Held>>,
    /// Per history channel, the offset up to which the client has everything (what it had,
    /// what it recovered, or where it started): a live copy of an older publication arriving
    /// late from the bus is not delivered again. Offsets compare within one epoch only: a
    /// publication of another epoch (the history started again) is always delivered.
    floors: Mutex<HashMap<String, Spot>>,
}

/// A publication's (epoch, offset).
pub(crate) type Spot = (String, String);

/// The epoch and offset a publication frame carries (`data.epoch`, `data.offset`), if any.
pub(crate) fn spot_of(frame: &Frame) -> Option<Spot> {
    let message: serde_json::Value = serde_json::from_slice(frame.payload()).ok()?;
    let field = |name: &str| message["data"][name].as_str().map(str::to_owned);
    Some((field("epoch")?, field("offset")?))
}

impl RecoveryBuffers {
    /// Starts holding live publications of `channel`.
    pub(crate) fn begin(&self, channel: &str) {
        let mut held = lock(&self.held);
        if held.insert(channel.to_owned(), Held::default()).is_none() {
            self.active.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Holds `frame` if `channel` is being set up, drops it if the client already has it.
    pub(crate) fn live(&self, channel: &str, frame: &Frame) -> Live {
        if self.active.load(Ordering::Acquire) == 0 {
            return Live::Deliver;
        }
        let mut held = lock(&self.held);
        if let Some(entry) = held.get_mut(channel) {
            if entry.frames.len() >= MAX_HELD {
                entry.overflowed = true;
            } else {
                entry.frames.push((frame.share(), spot_of(frame)));
            }
            return Live::Held;
        }
        drop(held);
        let floors = lock(&self.floors);
        let Some(floor) = floors.get(channel) else {
            return Live::Deliver;
        };
        match spot_of(frame) {
            Some((epoch, offset)) if epoch == floor.0 && offset <= floor.1 => Live::Drop,
            _ => Live::Deliver,
        }
    }

    /// Sets where the client's history subscription to `channel` starts.
    pub(crate) fn set_floor(&self, channel: &str, floor: Spot) {
        if lock(&self.floors)
            .insert(channel.to_owned(), floor)
            .is_none()
        {
            self.active.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Forgets the floor of `channel` (unsubscribed).
    pub(crate) fn clear_floor(&self, channel: &str) {
        if lock(&self.floors).remove(channel).is_some() {
            self.active.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Ends holding `channel`: `release` runs, under the lock (so no live publication of the
    /// channel can overtake), with the held frames and whether some were dropped; it queues
    /// the reply and what should follow it.
    pub(crate) fn finish<R>(
        &self,
        channel: &str,
        release: impl FnOnce(Vec<(Frame, Option<Spot>)>, bool) -> R,
    ) -> R {
        let mut held = lock(&self.held);
        let entry = held.remove(channel);
        if entry.is_some() {
            self.active.fetch_sub(1, Ordering::AcqRel);
        }
        let entry = entry.unwrap_or_default();
        release(entry.frames, entry.overflowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publication(offset: &str) -> Frame {
        let body = serde_json::json!({"data": {"channel": "c", "offset": offset, "epoch": "e"}});
        Frame::text(body.to_string())
    }

    #[test]
    fn held_while_set_up_then_late_copies_below_the_floor_are_dropped() {
        let buffers = RecoveryBuffers::default();
        assert_eq!(buffers.live("c", &publication("05")), Live::Deliver);
        buffers.begin("c");
        assert_eq!(buffers.live("c", &publication("06")), Live::Held);
        assert_eq!(buffers.live("other", &publication("01")), Live::Deliver);
        let held = buffers.finish("c", |held, overflowed| {
            buffers.set_floor("c", ("e".into(), "07".into()));
            (held.len(), overflowed)
        });
        assert_eq!(held, (1, false));
        // A copy of a publication the client recovered, arriving late from the bus.
        assert_eq!(buffers.live("c", &publication("07")), Live::Drop);
        assert_eq!(buffers.live("c", &publication("08")), Live::Deliver);
        // The history started again: its offsets are not compared with the old epoch's.
        let restarted = serde_json::json!({"data": {"channel": "c", "offset": "01", "epoch": "f"}});
        assert_eq!(
            buffers.live("c", &Frame::text(restarted.to_string())),
            Live::Deliver
        );
        buffers.clear_floor("c");
        assert_eq!(buffers.live("c", &publication("07")), Live::Deliver);
    }
}
