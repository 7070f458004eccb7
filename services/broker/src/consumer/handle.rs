//! One subscription as the consumer service holds it: the engine under a short lock, the
//! wake-ups between RPC handlers, consumer streams and the subscription's pump task, and the
//! cancellation of streams that are replaced.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use courier_impls::grpc::proto::danube::StreamMessage;
use courier_traits::clock::Clock;
use courier_traits::storage::Offset;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::clock::TokioClock;
use super::names::SubscriptionName;
use super::routing::routing_key;
use crate::catalog::LiveSink;
use crate::metrics::TopicMetrics;
use crate::subscription::{
    Attached, DeadLetter, LiveSubscription, ReliableSubscription, SubscribeError, SubscriptionType,
};
use crate::topic::TopicName;
use crate::writer::{Appended, AppendedSink};

/// The engine of a subscription and what the service keeps beside it.
#[derive(Debug)]
pub(crate) enum Engine {
    Reliable(Box<ReliableState>),
    Live(LiveSubscription<Arc<StreamMessage>>),
}

/// A reliable subscription's engine, and where its messages are in the topic log.
#[derive(Debug)]
pub(crate) struct ReliableState {
    pub(crate) engine: ReliableSubscription<StreamMessage>,
    /// The log position just before each message in flight (by dense offset): the cursor's
    /// position when that message is the first unsettled one.
    pub(crate) positions: BTreeMap<u64, Offset>,
    /// Where the next read of the log starts.
    pub(crate) read_position: Offset,
    /// The position last checkpointed.
    pub(crate) flushed: Offset,
    /// Acks since the last checkpoint.
    pub(crate) unflushed_acks: u64,
    /// When (clock ms) the cursor first moved past the last checkpoint.
    pub(crate) dirty_since_ms: Option<u64>,
    /// Dead letters not yet stored (the cursor is not checkpointed past them until they are).
    pub(crate) dead_letters: Vec<DeadLetter<StreamMessage>>,
    /// Whether new messages are handed over by the writer or read from the log.
    pub(crate) follow: Follow,
    /// When (clock ms) the subscription's task wakes next, as it last planned (`None`: not
    /// yet): a delivery whose ack deadline comes sooner wakes it.
    pub(crate) pump_wake_ms: Option<u64>,
}

/// How a reliable subscription gets new messages: handed over by the topic's writer on this
/// node while it is caught up, else read from the log by its task.
#[derive(Debug)]
pub(crate) struct Follow {
    /// The topic's writer on this node hands its appends over.
    pub(crate) writer: bool,
    /// The log must be read before appends are taken from the writer again.
    pub(crate) behind: bool,
    /// An append was handed over, not taken, since the task's last read of the log began:
    /// that read may not have seen it, so the log is read again.
    pub(crate) missed: bool,
    /// The dense offset of the next record to read, once known.
    pub(crate) read_next: Option<u64>,
}

impl Follow {
    /// Behind until the task first reads the log; `writer`: a writer hands appends over.
    pub(crate) fn new(writer: bool) -> Follow {
        Follow {
            writer,
            behind: true,
            missed: false,
            read_next: None,
        }
    }

    /// Whether new messages come from the writer (caught up) rather than from the log.
    pub(crate) fn following(&self) -> bool {
        self.writer && !self.behind
    }
}

/// What taking an append did.
enum Taken {
    /// Messages were offered to consumers.
    Offered,
    /// It does not continue where the subscription is: the log must be read.
    Behind,
    /// Nothing to do (read already, or the log is being read).
    Nothing,
}

impl ReliableState {
    /// The cursor as (dense offset if known, log position).
    pub(crate) fn cursor(&self) -> (Option<u64>, Offset) {
        let cursor = self.engine.cursor();
        if cursor >= self.engine.next_offset() {
            // Nothing in flight: the next message is the next one read. Its dense offset is
            // unknown only for a subscription that started at the tail and read nothing yet.
            let known = cursor > 0;
            return (known.then_some(cursor), self.read_position.clone());
        }
        match self.positions.range(cursor..).next() {
            Some((offset, position)) => (Some(*offset), position.clone()),
            None => (Some(cursor), self.read_position.clone()),
        }
    }

    /// Forgets the positions of settled messages.
    pub(crate) fn prune(&mut self) {
        let cursor = self.engine.cursor();
        self.positions = self.positions.split_off(&cursor);
    }

    /// Offers the messages of one append of the writer if it continues exactly where this
    /// subscription is and fits the window; else the log must be read instead.
    fn take_appended(&mut self, appended: &Appended) -> Taken {
        if self.follow.behind {
            // The task reads the log (it is durable before it is handed over).
            self.follow.missed = true;
            return Taken::Nothing;
        }
        if self
            .follow
            .read_next
            .is_some_and(|next| appended.end_offset() <= next)
        {
            // Read from the log already.
            return Taken::Nothing;
        }
        let continues = appended.continues(&self.read_position)
            && self
                .follow
                .read_next
                .is_none_or(|next| next == appended.first_offset)
            && appended.messages.len() <= self.engine.capacity();
        let position = appended
            .first_position
            .clone()
            .or_else(|| appended.after.clone());
        let Some(position) = position.filter(|_| continues) else {
            self.follow.behind = true;
            return Taken::Behind;
        };
        let mut offered = false;
        for message in &appended.messages {
            let Some(offset) = message.msg_id.as_ref().map(|id| id.topic_offset) else {
                continue;
            };
            let key = routing_key(message).to_owned();
            // Every message of the append resumes from its start: a restart re-reads the
            // ones before it, which the engine skips (they are below its cursor).
            if self.engine.offer(offset, &key, message.clone()) {
                self.positions.insert(offset, position.clone());
                offered = true;
            }
        }
        self.read_position = appended.next_position.clone();
        self.follow.read_next = Some(appended.end_offset());
        if offered {
            Taken::Offered
        } else {
            Taken::Nothing
        }
    }
}

/// One subscription on one topic.
#[derive(Debug)]
pub(crate) struct SubscriptionHandle {
    pub(crate) topic: TopicName,
    pub(crate) name: SubscriptionName,
    engine: Mutex<Engine>,
    /// Wakes consumer streams: something may be ready for them.
    pub(crate) deliveries: Notify,
    /// Wakes the pump: window freed, timers changed, consumers came or went.
    pub(crate) pump: Notify,
    streams: Mutex<Streams>,
    /// Stops the pump and every stream of this subscription (a child of the service's).
    pub(crate) stop: CancellationToken,
    /// Set when this node lost the topic: the pump stops without writing the cursor or dead
    /// letters (the new owner's cursor in storage is newer than this one).
    abandoned: AtomicBool,
    clock: TokioClock,
    /// How long a consumer may go without an open stream before it is detached.
    idle_grace_ms: u64,
    /// The topic's delivery, ack, nack and dead-letter counters.
    pub(crate) metrics: Arc<TopicMetrics>,
}

/// The consumers' streams.
#[derive(Debug, Default)]
struct Streams {
    /// Each consumer's open stream: its generation and its cancellation.
    open: HashMap<u64, (u64, CancellationToken)>,
    /// The consumers without an open stream, since when (clock ms).
    idle_since: HashMap<u64, u64>,
    /// The next stream's generation, so the late end of a replaced stream is told apart.
    next_generation: u64,
}

impl SubscriptionHandle {
    pub(crate) fn new(
        topic: TopicName,
        name: SubscriptionName,
        engine: Engine,
        stop: CancellationToken,
        clock: TokioClock,
        idle_grace: Duration,
        metrics: Arc<TopicMetrics>,
    ) -> SubscriptionHandle {
        SubscriptionHandle {
            topic,
            name,
            engine: Mutex::new(engine),
            deliveries: Notify::new(),
            pump: Notify::new(),
            streams: Mutex::new(Streams::default()),
            stop,
            abandoned: AtomicBool::new(false),
            clock,
            idle_grace_ms: u64::try_from(idle_grace.as_millis()).unwrap_or(u64::MAX),
            metrics,
        }
    }

    /// Stops the subscription because this node no longer serves its topic: its streams end
    /// and its pump stops without storing anything more.
    pub(crate) fn abandon(&self) {
        self.abandoned.store(true, Ordering::SeqCst);
        self.stop.cancel();
    }

    /// Whether the subscription was [abandoned](Self::abandon).
    pub(crate) fn is_abandoned(&self) -> bool {
        self.abandoned.load(Ordering::SeqCst)
    }

    /// The engine, locked. Never held across an `.await`.
    pub(crate) fn engine(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn streams(&self) -> MutexGuard<'_, Streams> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the pump read the log before taking appends from the writer again.
    pub(crate) fn fall_behind(&self) {
        if let Engine::Reliable(state) = &mut *self.engine() {
            state.follow.behind = true;
        }
    }

    /// Something changed that consumers and the pump should look at.
    pub(crate) fn wake(&self) {
        self.deliveries.notify_waiters();
        self.pump.notify_one();
    }

    /// Attaches consumer `id`, first detaching the consumers that went without an open stream
    /// for longer than the grace (they are gone: a live client reopens within seconds).
    /// Returns what attaching did and the ids detached for idleness.
    pub(crate) fn attach(
        &self,
        kind: SubscriptionType,
        id: u64,
        name: &str,
        filters: Vec<String>,
        max_consumers: usize,
    ) -> Result<(Attached, Vec<u64>), SubscribeError> {
        let now = self.clock.now_ms();
        let idle: Vec<u64> = {
            let mut streams = self.streams();
            let idle: Vec<u64> = streams
                .idle_since
                .iter()
                .filter(|(_, since)| now.saturating_sub(**since) >= self.idle_grace_ms)
                .map(|(id, _)| *id)
                .collect();
            for id in &idle {
                streams.idle_since.remove(id);
            }
            idle
        };
        let attached = {
            let mut engine = self.engine();
            for id in &idle {
                match &mut *engine {
                    Engine::Reliable(state) => state.engine.remove(*id),
                    Engine::Live(live) => live.remove(*id),
                };
            }
            // Detached consumers (stream ended, within their grace) do not count: a client
            // reconnecting with a new id would otherwise be refused until the grace ran out.
            let attached = match &*engine {
                Engine::Reliable(state) => state.engine.present_consumers(),
                Engine::Live(live) => live.present_consumers(),
            };
            // An Exclusive subscription holds one consumer, and a same-name one takes over.
            if attached >= max_consumers && kind != SubscriptionType::Exclusive {
                Err(SubscribeError::TooManyConsumers {
                    limit: max_consumers,
                })
            } else {
                match &mut *engine {
                    Engine::Reliable(state) => state.engine.subscribe(kind, id, name, filters),
                    Engine::Live(live) => live.subscribe(kind, id, name, filters),
                }
            }
        };
        let attached = match attached {
            Ok(attached) => attached,
            Err(error) => {
                if !idle.is_empty() {
                    self.wake();
                }
                return Err(error);
            }
        };
        {
            let mut streams = self.streams();
            streams.idle_since.insert(id, now);
            if let Some(old) = attached.replaced {
                streams.idle_since.remove(&old);
                if let Some((_, cancel)) = streams.open.remove(&old) {
                    cancel.cancel();
                }
            }
        }
        self.wake();
        Ok((attached, idle))
    }

    /// Whether nobody uses the subscription: no consumer has its stream open or went without
    /// one for less than the grace, and its cursor and dead letters are stored (so stopping it
    /// writes nothing, and opening it again reads the same cursor).
    pub(crate) fn unused(&self) -> bool {
        let now = self.clock.now_ms();
        {
            let streams = self.streams();
            let recent = |since: &u64| now.saturating_sub(*since) < self.idle_grace_ms;
            if !streams.open.is_empty() || streams.idle_since.values().any(recent) {
                return false;
            }
        }
        match &*self.engine() {
            Engine::Live(_) => true,
            Engine::Reliable(state) => {
                state.dead_letters.is_empty() && state.cursor().1 == state.flushed
            }
        }
    }

    pub(crate) fn holds(&self, id: u64) -> bool {
        match &*self.engine() {
            Engine::Reliable(state) => state.engine.holds(id),
            Engine::Live(live) => live.holds(id),
        }
    }

    /// Consumer `id` opens a stream; a stream it had open is cancelled. Returns the stream's
    /// generation and cancellation.
    pub(crate) fn open_stream(&self, id: u64) -> Result<(u64, CancellationToken), SubscribeError> {
        match &mut *self.engine() {
            Engine::Reliable(state) => state.engine.open_stream(id),
            Engine::Live(live) => live.open_stream(id),
        }?;
        let cancel = self.stop.child_token();
        let generation = {
            let mut streams = self.streams();
            let generation = streams.next_generation;
            streams.next_generation = generation.wrapping_add(1);
            streams.idle_since.remove(&id);
            if let Some((_, old)) = streams.open.insert(id, (generation, cancel.clone())) {
                old.cancel();
            }
            generation
        };
        self.wake();
        Ok((generation, cancel))
    }

    /// Stream `generation` of consumer `id` ended; ignored if a newer one replaced it.
    pub(crate) fn stream_ended(&self, id: u64, generation: u64) {
        {
            let mut streams = self.streams();
            match streams.open.get(&id) {
                Some((current, _)) if *current == generation => {
                    streams.open.remove(&id);
                    streams.idle_since.insert(id, self.clock.now_ms());
                }
                _ => return,
            }
        }
        match &mut *self.engine() {
            Engine::Reliable(state) => state.engine.close_stream(id),
            Engine::Live(live) => live.close_stream(id),
        }
        self.wake();
    }

    /// The next message for consumer `id`, ready to send.
    pub(crate) fn next_for(&self, id: u64, request_id: u64) -> Option<StreamMessage> {
        let mut wake_pump = false;
        let mut message = match &mut *self.engine() {
            Engine::Reliable(state) => {
                let delivery = state.engine.poll(id)?;
                if delivery.redeliveries > 0 {
                    self.metrics.redelivered.inc();
                }
                // Its ack deadline is the pump's to watch: wake it if it planned to sleep past.
                wake_pump = state
                    .engine
                    .next_deadline_ms()
                    .is_some_and(|due| state.pump_wake_ms.is_none_or(|wake| due < wake));
                delivery.message
            }
            Engine::Live(live) => Arc::unwrap_or_clone(live.poll(id)?),
        };
        if wake_pump {
            self.pump.notify_one();
        }
        self.metrics.delivered.inc();
        message.request_id = request_id;
        if message.subscription_name != self.name.as_str() {
            message.subscription_name = self.name.to_string();
        }
        if let Some(msg_id) = message.msg_id.as_mut() {
            // Spec §1 rule 1: exactly the (partition) topic subscribed to, or acks are lost.
            // (It already is for messages of this node's producers: no copy then.)
            if msg_id.topic_name != self.topic.as_str() {
                msg_id.topic_name = self.topic.to_string();
            }
        }
        Some(message)
    }

    /// Acks each of `offsets` (one Ack, or Courier's `AckMany`) under one lock. Returns how
    /// many settled an in-flight message.
    pub(crate) fn ack_many(&self, offsets: &[u64], now_ms: u64, flush_acks: u64) -> u64 {
        let (settled, wake_pump) = match &mut *self.engine() {
            Engine::Live(_) => (0, false),
            Engine::Reliable(state) => {
                let window_was_full = state.engine.capacity() == 0;
                let mut settled = 0u64;
                for &offset in offsets {
                    if state.engine.ack(offset) {
                        settled += 1;
                    }
                }
                let mut first_change = false;
                if settled > 0 {
                    state.unflushed_acks = state.unflushed_acks.saturating_add(settled);
                    first_change = state.dirty_since_ms.is_none();
                    state.dirty_since_ms.get_or_insert(now_ms);
                }
                // Not on every ack: the pump reads the log when it wakes. Only when it has
                // room to read again, a checkpoint to schedule, or one due by count.
                let wake = settled > 0
                    && (window_was_full || first_change || state.unflushed_acks >= flush_acks);
                (settled, wake)
            }
        };
        if wake_pump {
            self.pump.notify_one();
        }
        settled
    }

    /// Nacks `offset`. Returns whether it counted.
    pub(crate) fn nack(&self, offset: u64, delay: Option<Duration>, reason: &str) -> bool {
        let counted = match &mut *self.engine() {
            Engine::Live(_) => false,
            Engine::Reliable(state) => state.engine.nack(offset, delay, reason),
        };
        if counted {
            self.wake();
        }
        counted
    }
}

/// A non-reliable subscription takes its topic's messages in the producer's call.
impl LiveSink for SubscriptionHandle {
    fn offer(&self, message: Arc<StreamMessage>) -> bool {
        if self.stop.is_cancelled() {
            return false;
        }
        {
            let mut engine = self.engine();
            let Engine::Live(live) = &mut *engine else {
                return false;
            };
            // The key borrows from a second reference, so the message moves without a copy.
            let keyed = message.clone();
            live.offer(routing_key(&keyed), message);
        }
        self.deliveries.notify_waiters();
        true
    }
}

/// A reliable subscription takes its topic's appends in the writer's call, without waking its
/// task, while it is caught up.
impl AppendedSink for SubscriptionHandle {
    fn appended(&self, appended: &Appended) -> bool {
        if self.stop.is_cancelled() {
            return false;
        }
        let taken = match &mut *self.engine() {
            Engine::Reliable(state) => state.take_appended(appended),
            Engine::Live(_) => return false,
        };
        match taken {
            Taken::Offered => self.deliveries.notify_waiters(),
            Taken::Behind => self.pump.notify_one(),
            Taken::Nothing => {}
        }
        true
    }

    fn writer_stopped(&self) {
        if let Engine::Reliable(state) = &mut *self.engine() {
            state.follow.writer = false;
            state.follow.behind = true;
        }
        self.pump.notify_one();
    }
}
