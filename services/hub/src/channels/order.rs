//! [`Sequencer`]: delivers each history channel's publications to this node's subscribers in
//! the order of the channel's stream, each once, however they reach the node.
//!
//! A publication's offset comes from the storage append, but its delivery happens afterwards
//! (here for a local publisher, through the bus for one on another node), so two publishers
//! at the same moment can have 6 reach a node before 5. Every publication says where it lies
//! (`prev`, the offset before it, and `offset`, the one after): the sequencer delivers one
//! whose `prev` is where the channel's delivery stands, keeps one that arrives ahead of a gap,
//! and, when the gap is not closed within [`REORDER_WAIT`], reads the missing publications
//! from history (the publisher may have died between its append and its delivery, or the bus
//! lost the copy). A publication at or before where delivery stands (a late bus copy, or one
//! a recovery already returned) is dropped.
//!
//! Where delivery starts: a subscription to the channel sets it to the stream's tail it read
//! (everything before was the subscriber's own business: recovery or nothing); a channel
//! reached only through patterns starts at the earliest publication that arrived within the
//! first [`REORDER_WAIT`]. A channel's order is forgotten once no local subscription matches.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::frames::{deliver_local, placed_of, publication_frame};
use super::history::{History, Placed, Read};
use super::rules::{ChannelRule, rule_for};
use super::table::SubscriptionTable;
use crate::Frame;
use crate::locks::lock;
use crate::registry::{BroadcastReport, Registry};

/// How long a publication that arrived ahead of an earlier one waits for it before the gap
/// is filled from history.
pub(crate) const REORDER_WAIT: Duration = Duration::from_millis(100);

/// Most publications kept ahead of a gap per channel; later ones are not kept (filling the
/// gap reads them from history too).
const MAX_AHEAD: usize = 1024;

/// Records read from history per step of filling a gap.
const FILL_BATCH: usize = 256;

/// Failed attempts to fill a gap before delivery skips it (the storage cannot say what was
/// there; holding everything after it forever would be worse).
const MAX_FILL_ATTEMPTS: u32 = 20;

/// One history channel's delivery on this node.
#[derive(Default)]
struct Order {
    epoch: Option<Arc<str>>,
    /// Everything up to this offset was delivered (`None`: where delivery starts is not
    /// known yet).
    delivered: Option<String>,
    /// Publications that arrived ahead of a gap: by their `prev`, their offset and frame.
    ahead: BTreeMap<String, (String, Frame)>,
    /// A task is closing the gap.
    filling: bool,
    /// Publications of another epoch, kept until the storage says which epoch is current
    /// (a late copy from before the history started again must not take the channel back).
    other: Vec<(Placed, Frame)>,
    /// A task is asking the storage.
    checking: bool,
    /// Epochs the channel has left (a few): their late copies are dropped at once.
    retired: Vec<Arc<str>>,
}

/// How many left epochs a channel remembers.
const MAX_RETIRED: usize = 8;

impl Order {
    /// Moves to `epoch`, starting delivery at `start` (or where it is not known yet).
    fn switch_to(&mut self, epoch: Arc<str>, start: Option<String>) {
        if let Some(old) = self.epoch.take() {
            self.retired.push(old);
        }
        let keep = self.retired.len().saturating_sub(MAX_RETIRED);
        self.retired.drain(..keep);
        self.epoch = Some(epoch);
        self.delivered = start;
        self.ahead.clear();
    }
}

type Shared = Arc<Mutex<Order>>;

/// What a channel's background task does.
enum Job {
    /// Closes a gap from history.
    Fill,
    /// Finds the current epoch and moves delivery there.
    CheckEpoch,
}

/// Puts history channels' publications in stream order for this node's subscribers.
pub(crate) struct Sequencer {
    pub(crate) table: Arc<SubscriptionTable>,
    pub(crate) registry: Arc<Registry>,
    rules: Vec<ChannelRule>,
    history: Option<Arc<History>>,
    orders: Mutex<HashMap<String, Shared>>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Sequencer {
    pub(crate) fn new(
        table: Arc<SubscriptionTable>,
        registry: Arc<Registry>,
        rules: Vec<ChannelRule>,
        history: Option<Arc<History>>,
        stop: CancellationToken,
        tasks: TaskTracker,
    ) -> Sequencer {
        Sequencer {
            table,
            registry,
            rules,
            history,
            orders: Mutex::new(HashMap::new()),
            stop,
            tasks,
        }
    }

    /// Delivers a publication frame from the bus: in stream order on a history channel,
    /// at once on any other.
    pub(crate) fn deliver(self: &Arc<Self>, channel: &str, frame: &Frame) -> BroadcastReport {
        let keeps_history = self.history.is_some()
            && rule_for(&self.rules, channel).is_some_and(|r| r.history.is_some());
        match keeps_history.then(|| placed_of(frame)).flatten() {
            Some(placed) => self.arrive(channel, frame, placed),
            None => deliver_local(&self.table, &self.registry, channel, frame),
        }
    }

    /// A publication of history channel `channel`, at `placed` in its stream. What the
    /// report counts as delivered includes subscribers it will reach once a gap before it is
    /// closed.
    pub(crate) fn arrive(
        self: &Arc<Self>,
        channel: &str,
        frame: &Frame,
        placed: Placed,
    ) -> BroadcastReport {
        let Some(shared) = self.order_of(channel, false) else {
            return BroadcastReport::default(); // nobody here subscribes to it
        };
        let mut order = lock(&shared);
        match &order.epoch {
            None => order.epoch = Some(placed.epoch.clone()),
            Some(epoch) if *epoch == placed.epoch => {}
            Some(_) if order.retired.contains(&placed.epoch) => return BroadcastReport::default(),
            Some(_) => {
                if order.other.len() < MAX_AHEAD {
                    order.other.push((placed, frame.share()));
                }
                self.check_epoch_if_needed(&mut order, channel, &shared);
                return BroadcastReport {
                    delivered: self.table.matching(channel).len(),
                    ..BroadcastReport::default()
                };
            }
        }
        let report = match &order.delivered {
            Some(delivered) if placed.offset <= *delivered => BroadcastReport::default(),
            Some(delivered) if placed.prev == *delivered => {
                let report = self.emit(&mut order, channel, frame, placed.offset);
                self.release(&mut order, channel);
                report
            }
            _ => {
                if order.ahead.len() < MAX_AHEAD {
                    order
                        .ahead
                        .insert(placed.prev, (placed.offset, frame.share()));
                }
                BroadcastReport {
                    delivered: self.table.matching(channel).len(),
                    ..BroadcastReport::default()
                }
            }
        };
        self.fill_if_needed(&mut order, channel, &shared);
        let idle =
            report.delivered + report.dropped == 0 && order.ahead.is_empty() && !order.filling;
        drop(order);
        if idle {
            self.forget_if_unused(channel, &shared);
        }
        report
    }

    /// A subscription to `channel` read its stream's tail `tail` in `epoch`: if delivery has
    /// no starting point yet, it starts there.
    pub(crate) fn start_at(self: &Arc<Self>, channel: &str, epoch: &Arc<str>, tail: &str) {
        let Some(shared) = self.order_of(channel, true) else {
            return;
        };
        let mut order = lock(&shared);
        if order.epoch.is_none() {
            order.epoch = Some(epoch.clone());
        }
        if order.epoch.as_ref() != Some(epoch) {
            // The channel moved to a new epoch: delivery finishes the old one first.
            self.check_epoch_if_needed(&mut order, channel, &shared);
        } else if order.delivered.is_none() {
            order.delivered = Some(tail.to_owned());
            self.release(&mut order, channel);
        }
        self.fill_if_needed(&mut order, channel, &shared);
    }

    /// Keeps the publications of `held` that belong to the order's epoch ahead of where
    /// delivery stands, and retires the other epochs.
    fn adopt(&self, order: &mut Order, held: Vec<(Placed, Frame)>) {
        for (placed, frame) in held {
            if order.epoch.as_ref() == Some(&placed.epoch) {
                order.ahead.insert(placed.prev, (placed.offset, frame));
            } else if !order.retired.contains(&placed.epoch) {
                order.retired.push(placed.epoch);
            }
        }
    }

    fn check_epoch_if_needed(self: &Arc<Self>, order: &mut Order, channel: &str, shared: &Shared) {
        if order.checking {
            return;
        }
        let Some(history) = self.history.clone() else {
            return;
        };
        order.checking = true;
        self.spawn(Job::CheckEpoch, history, channel, shared);
    }

    /// Runs `job` for `channel` until it is done or the hub stops.
    fn spawn(self: &Arc<Self>, job: Job, history: Arc<History>, channel: &str, shared: &Shared) {
        let this = self.clone();
        let channel = channel.to_owned();
        let shared = shared.clone();
        self.tasks.spawn(async move {
            let work = async {
                match job {
                    Job::Fill => this.fill(&history, &channel, &shared).await,
                    Job::CheckEpoch => this.check_epoch(&history, &channel, &shared).await,
                }
            };
            tokio::select! {
                _ = this.stop.cancelled() => {}
                _ = work => {}
            }
        });
    }

    /// Asks the storage which epoch is the channel's. If it is not the one delivered,
    /// delivers the rest of the old epoch from its (closed) stream, then each epoch that
    /// followed (from their streams, or what arrived of them when a stream is gone already),
    /// and goes on in the current one; publications of other epochs are dropped.
    async fn check_epoch(self: &Arc<Self>, history: &History, channel: &str, shared: &Shared) {
        let current = match history.current(channel).await {
            Ok(current) => current.map(|(epoch, _)| epoch),
            Err(e) => {
                tracing::warn!(channel, error = %e, "reading the history's epoch failed");
                None
            }
        };
        let Some(current) = current else {
            lock(shared).checking = false; // the next publication of another epoch asks again
            return;
        };
        let old = lock(shared).epoch.clone();
        if let Some(old) = old.filter(|old| *old != current) {
            let next = history
                .epochs_after(channel, &old, &current, MAX_RETIRED)
                .await;
            self.drain_epoch(history, channel, shared).await;
            for epoch in next {
                let start = history.start(channel, &epoch).await.ok().flatten();
                {
                    let mut order = lock(shared);
                    order.switch_to(epoch.clone(), start);
                    let held = std::mem::take(&mut order.other);
                    let (theirs, rest) = held.into_iter().partition(|(p, _)| p.epoch == epoch);
                    order.other = rest;
                    self.adopt(&mut order, theirs);
                    self.release(&mut order, channel);
                }
                if epoch != current {
                    self.drain_epoch(history, channel, shared).await;
                }
            }
        }
        let mut order = lock(shared);
        if order.epoch.as_ref() != Some(&current) {
            order.switch_to(current, None);
        }
        self.finish_check(&mut order, channel, shared);
    }

    /// Delivers the rest of the order's epoch, which the channel has left: from its stream
    /// until it is closed and read to its end (or gone, or unreadable for long), then what
    /// is kept ahead, over any gap left.
    async fn drain_epoch(&self, history: &History, channel: &str, shared: &Shared) {
        let mut attempts = 0;
        loop {
            let (epoch, from) = {
                let order = lock(shared);
                match (&order.epoch, &order.delivered) {
                    (Some(epoch), Some(from)) => (epoch.clone(), from.clone()),
                    _ => break,
                }
            };
            let (progressed, finished) = match history
                .read_after(channel, &epoch, &from, FILL_BATCH)
                .await
            {
                Ok(read) => {
                    let finished = read.finished;
                    (self.apply(&mut lock(shared), channel, read), finished)
                }
                Err(e) => {
                    tracing::warn!(channel, error = %e, "reading an old epoch's history failed");
                    (false, false)
                }
            };
            attempts = if progressed { 0 } else { attempts + 1 };
            if finished || attempts >= MAX_FILL_ATTEMPTS {
                break;
            }
            if !progressed {
                // The node starting the new epoch closes the old one's stream right after.
                tokio::time::sleep(REORDER_WAIT).await;
            }
        }
        let mut order = lock(shared);
        while let Some(next) = order.ahead.keys().next().cloned() {
            order.delivered = Some(next);
            self.release(&mut order, channel);
        }
    }

    fn finish_check(self: &Arc<Self>, order: &mut Order, channel: &str, shared: &Shared) {
        order.checking = false;
        let held = std::mem::take(&mut order.other);
        self.adopt(order, held);
        self.release(order, channel);
        self.fill_if_needed(order, channel, shared);
    }

    /// Delivers the records read from history that follow on where delivery stands (with
    /// the frame kept ahead when there is one); whether delivery moved.
    fn apply(&self, order: &mut Order, channel: &str, read: Read) -> bool {
        let before = order.delivered.clone();
        for (placed, data) in read.records {
            if order.epoch.as_ref() != Some(&placed.epoch)
                || order.delivered.as_ref() != Some(&placed.prev)
            {
                continue;
            }
            match (order.ahead.remove(&placed.prev), data) {
                (Some((offset, frame)), _) => {
                    self.emit(order, channel, &frame, offset);
                }
                (None, Some(data)) => {
                    let frame = publication_frame(channel, &data, Some(&placed));
                    self.emit(order, channel, &frame, placed.offset);
                }
                (None, None) => order.delivered = Some(placed.offset), // not a publication
            }
        }
        self.release(order, channel);
        order.delivered != before
    }

    /// The channel's order; made when `always` or when a local subscription matches it.
    fn order_of(&self, channel: &str, always: bool) -> Option<Shared> {
        let mut orders = lock(&self.orders);
        if let Some(shared) = orders.get(channel) {
            return Some(shared.clone());
        }
        if !always && self.table.matching(channel).is_empty() {
            return None;
        }
        let shared = Shared::default();
        orders.insert(channel.to_owned(), shared.clone());
        Some(shared)
    }

    /// Drops the channel's order when no local subscription matches it any more. Checked
    /// under the map's lock, as `order_of` makes one: a subscription made since is seen.
    fn forget_if_unused(&self, channel: &str, shared: &Shared) {
        let mut orders = lock(&self.orders);
        if orders.get(channel).is_some_and(|o| Arc::ptr_eq(o, shared))
            && self.table.matching(channel).is_empty()
        {
            orders.remove(channel);
        }
    }

    fn emit(
        &self,
        order: &mut Order,
        channel: &str,
        frame: &Frame,
        offset: String,
    ) -> BroadcastReport {
        order.delivered = Some(offset);
        deliver_local(&self.table, &self.registry, channel, frame)
    }

    /// Delivers what was kept ahead and now follows on, and forgets what is behind.
    fn release(&self, order: &mut Order, channel: &str) {
        loop {
            let Some(delivered) = order.delivered.clone() else {
                return;
            };
            order.ahead = order.ahead.split_off(&delivered);
            let Some((offset, frame)) = order.ahead.remove(&delivered) else {
                return;
            };
            self.emit(order, channel, &frame, offset);
        }
    }

    fn fill_if_needed(self: &Arc<Self>, order: &mut Order, channel: &str, shared: &Shared) {
        if order.ahead.is_empty() || order.filling {
            return;
        }
        let Some(history) = self.history.clone() else {
            return;
        };
        order.filling = true;
        self.spawn(Job::Fill, history, channel, shared);
    }

    /// Closes the gaps of `channel` from history, until nothing is kept ahead.
    async fn fill(&self, history: &History, channel: &str, shared: &Shared) {
        let mut failures = 0;
        let mut wait = true;
        loop {
            if wait {
                tokio::time::sleep(REORDER_WAIT).await;
            }
            let unknown_start = {
                let order = lock(shared);
                order.epoch.clone().filter(|_| order.delivered.is_none())
            };
            let start = match unknown_start {
                Some(epoch) => history.start(channel, &epoch).await.ok().flatten(),
                None => None,
            };
            let (epoch, from) = {
                let mut order = lock(shared);
                if order.delivered.is_none() {
                    // A new epoch starts at its stream's start; a channel reached through
                    // patterns only, at the earliest arrival.
                    order.delivered = start.or_else(|| order.ahead.keys().next().cloned());
                }
                self.release(&mut order, channel);
                if failures >= MAX_FILL_ATTEMPTS {
                    tracing::warn!(
                        channel,
                        "history unreadable: publications before the next one kept are skipped"
                    );
                    order.delivered = order.ahead.keys().next().cloned();
                    self.release(&mut order, channel);
                    failures = 0;
                }
                match (&order.epoch, &order.delivered) {
                    (Some(epoch), Some(from)) if !order.ahead.is_empty() => {
                        (epoch.clone(), from.clone())
                    }
                    _ => {
                        order.filling = false;
                        return;
                    }
                }
            };
            let progressed = match history.read_after(channel, &epoch, &from, FILL_BATCH).await {
                Ok(read) => self.apply(&mut lock(shared), channel, read),
                Err(e) => {
                    tracing::warn!(channel, error = %e, "reading history to close a gap failed");
                    false
                }
            };
            failures = if progressed { 0 } else { failures + 1 };
            wait = !progressed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::HistoryLimits;
    use crate::channels::pattern::ChannelPattern;
    use crate::channels::rules::ChannelRule;
    use courier_impls::memory::MemoryStreamStorage;
    use serde_json::json;

    fn limits() -> HistoryLimits {
        HistoryLimits::new(100, Duration::from_secs(60))
    }

    fn rules() -> Vec<ChannelRule> {
        vec![
            ChannelRule::new(ChannelPattern::parse("feed.*").expect("pattern"))
                .with_history(limits()),
        ]
    }

    #[tokio::test(start_paused = true)]
    async fn forgets_a_channel_nobody_here_subscribes_to() {
        let history = Arc::new(History::new(Arc::new(MemoryStreamStorage::new())));
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let registry = Arc::new(Registry::new(metrics, Duration::from_secs(1)));
        let sequencer = Arc::new(Sequencer::new(
            Arc::new(SubscriptionTable::default()),
            registry,
            rules(),
            Some(history.clone()),
            CancellationToken::new(),
            TaskTracker::new(),
        ));
        let placed = history
            .append("feed.a", limits(), &json!(1))
            .await
            .expect("append");
        let frame = publication_frame("feed.a", &json!(1), Some(&placed));
        sequencer.arrive("feed.a", &frame, placed.clone());
        assert!(lock(&sequencer.orders).is_empty());
        sequencer.start_at("feed.a", &placed.epoch, &placed.offset);
        assert_eq!(lock(&sequencer.orders).len(), 1);
        // Nobody subscribes: the next publication forgets the order.
        let next = history
            .append("feed.a", limits(), &json!(2))
            .await
            .expect("append");
        let frame = publication_frame("feed.a", &json!(2), Some(&next));
        sequencer.arrive("feed.a", &frame, next);
        assert!(lock(&sequencer.orders).is_empty());
    }
}
