//! Each subscription's task: for a reliable one it reads the topic log into the window, runs
//! the engine's timers, stores dead letters and checkpoints the cursor (debounced). It stops
//! with its subscription's token. (A live subscription has no task: the topic's
//! [fan-out](crate::catalog::LiveFanout) queues into its engine.)
//!
//! A reliable subscription reads the log from storage only to catch up (at the start, after
//! a full window or a gap); once caught up, the topic's writer on this node hands each
//! [append](crate::writer::Appended) to the subscription in the writer's own call
//! ([`SubscriptionHandle`]'s [`AppendedSink`]), without waking this task, as long as each
//! append continues exactly where the subscription is; otherwise the task reads the log
//! again. It also reads the log whenever its timer fires with nothing due, so that appends
//! made through another node (a paused owner, see [`crate::ownership`]) are not missed for
//! long.

use std::sync::Arc;
use std::time::Duration;

use courier_impls::grpc::proto::danube::StreamMessage;
use courier_traits::clock::Clock;
use courier_traits::storage::{
    AppendRequest, ReadLimits, StorageError, StreamConfig, StreamName, StreamStorage, WaitOutcome,
};

use super::checkpoint::{Checkpoint, CursorStore};
use super::clock::TokioClock;
use super::config::ConsumerConfig;
use super::handle::{Engine, SubscriptionHandle};
use super::names::dead_letter_stream;
use super::routing::routing_key;
use crate::catalog::{decode_record, encode_record};
#[cfg(doc)]
use crate::writer::AppendedSink;

/// The attribute of a dead letter naming why it was given up on.
pub const DEAD_LETTER_REASON: &str = "courier-dead-letter-reason";
/// The attribute of a dead letter counting its deliveries.
pub const DEAD_LETTER_DELIVERIES: &str = "courier-dead-letter-deliveries";

/// The longest pause after a storage failure before trying again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A reliable subscription's task.
pub(crate) struct ReliablePump {
    handle: Arc<SubscriptionHandle>,
    storage: Arc<dyn StreamStorage>,
    cursor: CursorStore,
    log: StreamName,
    clock: TokioClock,
    config: ConsumerConfig,
    dead_letter_stream_created: bool,
    /// The log was closed: waiting on it would return at once, forever.
    log_closed: bool,
}

enum Step {
    Continue,
    Stop,
}

impl ReliablePump {
    pub(crate) fn new(
        handle: Arc<SubscriptionHandle>,
        storage: Arc<dyn StreamStorage>,
        cursor: CursorStore,
        log: StreamName,
        clock: TokioClock,
        config: ConsumerConfig,
    ) -> ReliablePump {
        ReliablePump {
            handle,
            storage,
            cursor,
            log,
            clock,
            config,
            dead_letter_stream_created: false,
            log_closed: false,
        }
    }

    /// Runs until the subscription stops, then stores what is pending and checkpoints.
    pub(crate) async fn run(mut self) {
        let mut failures = 0u32;
        loop {
            match self.step().await {
                Ok(Step::Stop) => break,
                Ok(Step::Continue) => failures = 0,
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let backoff = Duration::from_millis(50)
                        .saturating_mul(1 << failures.min(7))
                        .min(MAX_BACKOFF);
                    tracing::warn!(
                        topic = %self.handle.topic, subscription = %self.handle.name,
                        %error, ?backoff, "consumer storage failed; retrying"
                    );
                    tokio::select! {
                        _ = self.handle.stop.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                }
            }
        }
        if self.handle.is_abandoned() {
            return;
        }
        if let Err(error) = self.settle(true).await {
            tracing::warn!(
                topic = %self.handle.topic, subscription = %self.handle.name, %error,
                "could not checkpoint the cursor on close; it resumes at the last checkpoint"
            );
        }
    }

    async fn step(&mut self) -> Result<Step, StorageError> {
        if self.handle.stop.is_cancelled() {
            return Ok(Step::Stop);
        }
        if let Engine::Reliable(state) = &mut *self.handle.engine() {
            state.engine.tick();
        }
        self.handle.deliveries.notify_waiters();
        // Following, the writer hands appends over itself; behind, read them from the log.
        let more = if self.following() {
            false
        } else {
            self.read().await?
        };
        self.settle(false).await?;
        if more {
            return Ok(Step::Continue);
        }
        let (capacity, position, deadline) = match &*self.handle.engine() {
            Engine::Reliable(state) => {
                let flush = state
                    .dirty_since_ms
                    .map(|since| since.saturating_add(millis(self.config.cursor_flush_interval)));
                let deadline = match (state.engine.next_deadline_ms(), flush) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                (
                    state.engine.capacity(),
                    state.read_position.clone(),
                    deadline,
                )
            }
            Engine::Live(_) => return Ok(Step::Stop),
        };
        let sleep = deadline.map_or(self.config.storage_wait, |at| self.clock.until(at));
        let following = self.sleeping_until(sleep);
        tokio::select! {
            biased;
            _ = self.handle.stop.cancelled() => return Ok(Step::Stop),
            _ = self.handle.pump.notified() => {}
            _ = tokio::time::sleep(sleep) => {
                // Look at the log itself now and then: another node may have appended.
                self.handle.fall_behind();
            }
            outcome = self.storage.wait(&self.log, &position, self.config.storage_wait),
                if capacity > 0 && !following && !self.log_closed => {
                self.log_closed = outcome? == WaitOutcome::Closed;
            }
        }
        Ok(Step::Continue)
    }

    /// Whether new messages come from the writer (caught up) rather than from the log.
    fn following(&self) -> bool {
        match &*self.handle.engine() {
            Engine::Reliable(state) => state.follow.following(),
            Engine::Live(_) => false,
        }
    }

    /// Notes that this task sleeps for `sleep` from now (so a delivery whose ack deadline
    /// comes sooner wakes it); returns whether it follows the writer.
    fn sleeping_until(&self, sleep: Duration) -> bool {
        let wake_ms = self.clock.now_ms().saturating_add(millis(sleep));
        match &mut *self.handle.engine() {
            Engine::Reliable(state) => {
                state.pump_wake_ms = Some(wake_ms);
                state.follow.following()
            }
            Engine::Live(_) => false,
        }
    }

    /// Reads what fits in the window from the log. Returns whether more may be read now.
    async fn read(&mut self) -> Result<bool, StorageError> {
        let (capacity, from) = match &mut *self.handle.engine() {
            Engine::Reliable(state) => {
                // An append handed over from now on, while this read may not see it, makes
                // the log be read again.
                state.follow.missed = false;
                (state.engine.capacity(), state.read_position.clone())
            }
            Engine::Live(_) => return Ok(false),
        };
        if capacity == 0 {
            return Ok(false);
        }
        let limits = ReadLimits {
            max_records: capacity.min(self.config.read_batch),
            ..ReadLimits::default()
        };
        let batch = self.storage.read(&self.log, Some(from), limits).await?;
        let mut offered = false;
        if let Engine::Reliable(state) = &mut *self.handle.engine() {
            for record in &batch.records {
                let message = match decode_record(&record.data) {
                    Ok(message) => message,
                    Err(error) => {
                        tracing::warn!(log = %self.log, %error, "skipping an unreadable record");
                        continue;
                    }
                };
                let Some(offset) = message.msg_id.as_ref().map(|id| id.topic_offset) else {
                    tracing::warn!(log = %self.log, "skipping a record without msg_id");
                    continue;
                };
                let key = routing_key(&message).to_owned();
                state.follow.read_next = Some(offset.saturating_add(1));
                if state.engine.offer(offset, &key, message) {
                    state.positions.insert(offset, record.offset.clone());
                    offered = true;
                }
            }
            state.read_position = batch.next_offset.clone();
            state.follow.behind = !batch.up_to_date || state.follow.missed;
        }
        if offered {
            self.handle.deliveries.notify_waiters();
        }
        Ok(!batch.up_to_date && !batch.records.is_empty())
    }

    /// Stores pending dead letters, then checkpoints the cursor if due (`force`: if it moved).
    async fn settle(&mut self, force: bool) -> Result<(), StorageError> {
        if self.handle.is_abandoned() {
            // Another node owns the topic now: its cursor and dead letters are the ones kept.
            return Ok(());
        }
        let dead = match &mut *self.handle.engine() {
            Engine::Reliable(state) => {
                let taken = state.engine.take_dead_letters();
                state.dead_letters.extend(taken);
                state.dead_letters.clone()
            }
            Engine::Live(_) => return Ok(()),
        };
        if !dead.is_empty() {
            self.store_dead_letters(&dead).await?;
            self.handle.metrics.dead_lettered.add(dead.len() as u64);
            if let Engine::Reliable(state) = &mut *self.handle.engine() {
                state
                    .dead_letters
                    .drain(..dead.len().min(state.dead_letters.len()));
            }
        }
        let now = self.clock.now_ms();
        let due = match &mut *self.handle.engine() {
            Engine::Reliable(state) => {
                let (next, position) = state.cursor();
                if position == state.flushed {
                    state.dirty_since_ms = None;
                    None
                } else {
                    let since = *state.dirty_since_ms.get_or_insert(now);
                    let interval = millis(self.config.cursor_flush_interval);
                    (force
                        || state.unflushed_acks >= self.config.cursor_flush_acks
                        || now >= since.saturating_add(interval))
                    .then(|| {
                        (
                            Checkpoint::new(next, &position),
                            position,
                            state.unflushed_acks,
                        )
                    })
                }
            }
            Engine::Live(_) => None,
        };
        let Some((checkpoint, position, acks)) = due else {
            return Ok(());
        };
        self.cursor.save(&checkpoint).await?;
        if let Engine::Reliable(state) = &mut *self.handle.engine() {
            state.flushed = position;
            state.unflushed_acks = state.unflushed_acks.saturating_sub(acks);
            state.dirty_since_ms = None;
            state.prune();
        }
        Ok(())
    }

    async fn store_dead_letters(
        &mut self,
        dead: &[crate::subscription::DeadLetter<StreamMessage>],
    ) -> Result<(), StorageError> {
        let stream = dead_letter_stream(&self.handle.topic, &self.handle.name);
        if !self.dead_letter_stream_created {
            self.storage
                .create(
                    &stream,
                    StreamConfig::with_content_type(crate::catalog::log::LOG_CONTENT_TYPE),
                    Vec::new(),
                )
                .await?;
            self.dead_letter_stream_created = true;
        }
        let records = dead
            .iter()
            .map(|letter| {
                let mut message = letter.message.clone();
                message
                    .attributes
                    .insert(DEAD_LETTER_REASON.to_owned(), letter.reason.clone());
                message.attributes.insert(
                    DEAD_LETTER_DELIVERIES.to_owned(),
                    letter.deliveries.to_string(),
                );
                encode_record(&message)
            })
            .collect();
        self.storage
            .append(&stream, AppendRequest::records(records))
            .await?;
        Ok(())
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
