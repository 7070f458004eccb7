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
use super::history::{History, Placed};
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
}

type Shared = Arc<Mutex<Order>>;

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
        if order.epoch.as_ref() != Some(&placed.epoch) {
            // The channel's history started again: what was ordered before does not continue.
            *order = Order {
                epoch: Some(placed.epoch.clone()),
                filling: order.filling,
                ..Order::default()
            };
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
        if order.epoch.as_ref() != Some(epoch) {
            *order = Order {
                epoch: Some(epoch.clone()),
                filling: order.filling,
                ..Order::default()
            };
        }
        if order.delivered.is_none() {
            order.delivered = Some(tail.to_owned());
            self.release(&mut order, channel);
        }
        self.fill_if_needed(&mut order, channel, &shared);
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
        let this = self.clone();
        let channel = channel.to_owned();
        let shared = shared.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = this.stop.cancelled() => {}
                _ = this.fill(&history, &channel, &shared) => {}
            }
        });
    }

    /// Closes the gaps of `channel` from history, until nothing is kept ahead.
    async fn fill(&self, history: &History, channel: &str, shared: &Shared) {
        let mut failures = 0;
        let mut wait = true;
        loop {
            if wait {
                tokio::time::sleep(REORDER_WAIT).await;
            }
            let (epoch, from) = {
                let mut order = lock(shared);
                if order.delivered.is_none() {
                    // Reached through patterns only: delivery starts at the earliest arrival.
                    order.delivered = order.ahead.keys().next().cloned();
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
            let read = history.read_after(channel, &epoch, &from, FILL_BATCH).await;
            let progressed = match read {
                Ok(records) => {
                    let mut order = lock(shared);
                    let before = order.delivered.clone();
                    for (placed, data) in records {
                        if order.epoch.as_ref() != Some(&placed.epoch)
                            || order.delivered.as_ref() != Some(&placed.prev)
                        {
                            continue;
                        }
                        match (order.ahead.remove(&placed.prev), data) {
                            (Some((offset, frame)), _) => {
                                self.emit(&mut order, channel, &frame, offset);
                            }
                            (None, Some(data)) => {
                                let frame = publication_frame(channel, &data, Some(&placed));
                                self.emit(&mut order, channel, &frame, placed.offset);
                            }
                            // Not a publication (the epoch record): stepped over.
                            (None, None) => order.delivered = Some(placed.offset),
                        }
                    }
                    self.release(&mut order, channel);
                    order.delivered != before
                }
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

    fn rules() -> Vec<ChannelRule> {
        vec![
            ChannelRule::new(ChannelPattern::parse("feed.*").expect("pattern"))
                .with_history(HistoryLimits::new(100, Duration::from_secs(60))),
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
        let placed = history.append("feed.a", &json!(1)).await.expect("append");
        let frame = publication_frame("feed.a", &json!(1), Some(&placed));
        sequencer.arrive("feed.a", &frame, placed.clone());
        assert!(lock(&sequencer.orders).is_empty());
        sequencer.start_at("feed.a", &placed.epoch, &placed.offset);
        assert_eq!(lock(&sequencer.orders).len(), 1);
        // Nobody subscribes: the next publication forgets the order.
        let next = history.append("feed.a", &json!(2)).await.expect("append");
        let frame = publication_frame("feed.a", &json!(2), Some(&next));
        sequencer.arrive("feed.a", &frame, next);
        assert!(lock(&sequencer.orders).is_empty());
    }
}
