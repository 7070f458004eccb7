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
    frames: Vec<(Frame, Option<String>)>,
    overflowed: bool,
}

/// One connection's channels being set up.
#[derive(Default)]
pub(crate) struct RecoveryBuffers {
    /// How many channels are held: the delivery path checks it without taking the lock.
    active: AtomicUsize,
    held: Mutex<HashMap<String, Held>>,
}

/// The offset a publication frame carries (`data.offset`), if any.
pub(crate) fn offset_of(frame: &Frame) -> Option<String> {
    let message: serde_json::Value = serde_json::from_slice(frame.payload()).ok()?;
    message["data"]["offset"].as_str().map(str::to_owned)
}

impl RecoveryBuffers {
    /// Starts holding live publications of `channel`.
    pub(crate) fn begin(&self, channel: &str) {
        let mut held = lock(&self.held);
        if held.insert(channel.to_owned(), Held::default()).is_none() {
            self.active.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Holds `frame` if `channel` is being set up; false when it should be delivered now.
    pub(crate) fn hold(&self, channel: &str, frame: &Frame) -> bool {
        if self.active.load(Ordering::Acquire) == 0 {
            return false;
        }
        let mut held = lock(&self.held);
        let Some(entry) = held.get_mut(channel) else {
            return false;
        };
        if entry.frames.len() >= MAX_HELD {
            entry.overflowed = true;
        } else {
            entry.frames.push((frame.share(), offset_of(frame)));
        }
        true
    }

    /// Ends holding `channel`: `release` runs, under the lock (so no live publication of the
    /// channel can overtake), with the held frames and whether some were dropped; it queues
    /// the reply and what should follow it.
    pub(crate) fn finish<R>(
        &self,
        channel: &str,
        release: impl FnOnce(Vec<(Frame, Option<String>)>, bool) -> R,
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
