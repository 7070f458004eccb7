//! Which frames from other nodes this node already delivered, by envelope id, so a frame the
//! bus stored twice reaches each client once.
//!
//! A second copy appears when a publish is answered with an error although the backend stored
//! it (the answer was lost, or the backend was frozen past the client's timeout): the sender
//! keeps the frame in its backlog and publishes it again, with the same envelope id.
//!
//! Memory is bounded: per sender start (origin node, boot) a window of the last `window`
//! sequence numbers as a bitmap, and at most [`MAX_SENDERS`] senders (the least recently
//! heard is forgotten). The window is wide enough for every copy that can occur: a sender
//! re-publishes its backlog in order before anything newer, so between the first copy of a
//! frame and its re-publish a receiver sees at most the backlog and the frames that were in
//! flight with it. A sequence number older than the window can only be such a late copy, so
//! it counts as delivered.

use std::collections::HashMap;

use super::envelope::EnvelopeId;

/// Senders remembered at once; a cluster's nodes and their recent restarts fit easily.
pub(crate) const MAX_SENDERS: usize = 256;

/// Sequence numbers remembered per sender at least (8 KiB of bits each).
const MIN_WINDOW: u64 = 1 << 16;

/// The delivered envelope ids of one link (broadcast or inbox).
pub(crate) struct Delivered {
    senders: HashMap<(String, u64), SeqWindow>,
    window: u64,
    /// Logical clock for forgetting the least recently heard sender.
    clock: u64,
}

impl Delivered {
    /// Remembers enough to recognise copies of frames re-published from a backlog of
    /// `backlog` frames.
    pub(crate) fn new(backlog: usize) -> Delivered {
        let wanted = (backlog as u64).saturating_mul(2).max(MIN_WINDOW);
        Delivered {
            senders: HashMap::new(),
            window: wanted.div_ceil(64) * 64,
            clock: 0,
        }
    }

    /// True the first time `id` from `origin` is offered; false for a copy.
    pub(crate) fn first_delivery(&mut self, origin: &str, id: EnvelopeId) -> bool {
        self.clock += 1;
        let key = (origin.to_owned(), id.boot);
        if !self.senders.contains_key(&key) && self.senders.len() >= MAX_SENDERS {
            self.forget_least_recent();
        }
        let window = self.window;
        let sender = self
            .senders
            .entry(key)
            .or_insert_with(|| SeqWindow::new(window));
        sender.last_heard = self.clock;
        sender.first(id.seq)
    }

    fn forget_least_recent(&mut self) {
        let oldest = self
            .senders
            .iter()
            .min_by_key(|(_, w)| w.last_heard)
            .map(|(k, _)| k.clone());
        if let Some(oldest) = oldest {
            self.senders.remove(&oldest);
        }
    }
}

/// The last `window` sequence numbers of one sender: bit `seq % window` says delivered.
struct SeqWindow {
    highest: u64,
    bits: Vec<u64>,
    last_heard: u64,
}

impl SeqWindow {
    fn new(window: u64) -> SeqWindow {
        SeqWindow {
            highest: 0,
            bits: vec![0; (window / 64) as usize],
            last_heard: 0,
        }
    }

    fn window(&self) -> u64 {
        self.bits.len() as u64 * 64
    }

    fn slot(&self, seq: u64) -> (usize, u64) {
        let bit = seq % self.window();
        ((bit / 64) as usize, 1 << (bit % 64))
    }

    fn first(&mut self, seq: u64) -> bool {
        let window = self.window();
        if seq > self.highest {
            // Slots between the old and the new highest now stand for newer numbers.
            if seq - self.highest >= window {
                self.bits.fill(0);
            } else {
                for cleared in self.highest + 1..seq {
                    let (word, mask) = self.slot(cleared);
                    self.bits[word] &= !mask;
                }
            }
            self.highest = seq;
            let (word, mask) = self.slot(seq);
            self.bits[word] |= mask;
            return true;
        }
        if self.highest - seq >= window {
            return false;
        }
        let (word, mask) = self.slot(seq);
        let first = self.bits[word] & mask == 0;
        self.bits[word] |= mask;
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(boot: u64, seq: u64) -> EnvelopeId {
        EnvelopeId { boot, seq }
    }

    #[test]
    fn a_copy_is_refused_and_late_first_copies_are_not() {
        let mut d = Delivered::new(0);
        assert!(d.first_delivery("a", id(1, 1)));
        assert!(d.first_delivery("a", id(1, 3)));
        assert!(!d.first_delivery("a", id(1, 1)), "copy of 1");
        assert!(
            d.first_delivery("a", id(1, 2)),
            "2 arrived after 3: still new"
        );
        assert!(!d.first_delivery("a", id(1, 2)));
        assert!(!d.first_delivery("a", id(1, 3)));
    }

    #[test]
    fn senders_and_their_restarts_are_told_apart() {
        let mut d = Delivered::new(0);
        assert!(d.first_delivery("a", id(1, 1)));
        assert!(d.first_delivery("b", id(1, 1)), "another node");
        assert!(d.first_delivery("a", id(2, 1)), "node a started again");
    }

    #[test]
    fn the_window_covers_the_backlog_and_slides() {
        let mut d = Delivered::new(100_000);
        let window = d.window;
        assert!(window >= 200_000 && window.is_multiple_of(64), "{window}");
        assert!(d.first_delivery("a", id(1, 5)));
        // A whole backlog later, the copy of 5 is still recognised.
        assert!(d.first_delivery("a", id(1, 5 + 100_000)));
        assert!(!d.first_delivery("a", id(1, 5)));
        // Sliding reuses slots: numbers passed over by a jump get their slots cleared, so one
        // that arrives late (out of order) is new although its slot held 5.
        assert!(d.first_delivery("a", id(1, 6 + window)));
        assert!(
            d.first_delivery("a", id(1, 5 + window)),
            "slot of 5 was cleared"
        );
        assert!(!d.first_delivery("a", id(1, 5 + window)));
        assert!(
            !d.first_delivery("a", id(1, 5)),
            "older than the window: a late copy"
        );
        // A jump beyond the window clears everything.
        assert!(d.first_delivery("a", id(1, 10 * window)));
        assert!(d.first_delivery("a", id(1, 10 * window - 1)));
    }

    #[test]
    fn the_least_recently_heard_sender_is_forgotten_past_the_limit() {
        let mut d = Delivered::new(0);
        for node in 0..MAX_SENDERS {
            assert!(d.first_delivery(&format!("n{node}"), id(1, 1)));
        }
        assert!(
            !d.first_delivery("n0", id(1, 1)),
            "n0 heard again: now recent"
        );
        assert!(d.first_delivery("newcomer", id(1, 1)));
        assert_eq!(d.senders.len(), MAX_SENDERS);
        assert!(
            d.first_delivery("n1", id(1, 1)),
            "n1 was the least recent and forgotten"
        );
        assert!(!d.first_delivery("n0", id(1, 1)));
    }
}
