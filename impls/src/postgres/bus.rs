//! [`PgBus`]: a message bus of rows, with NOTIFY as the wake-up.
//!
//! Each publish, in one statement committed on its own, takes the next sequence number of its
//! topic under the topic row's lock (so sequence order is commit order: a reader never skips
//! a row that commits late) and inserts the message; once committed, it wakes this node's
//! subscribers of the topic and has the notifier (`notifier.rs`) notify channel `courier_bus`
//! with its name. Payloads stay in the table — NOTIFY carries only the topic, so its
//! 8000-byte limit never applies.
//! Subscriptions read rows after their last sequence whenever the bus's single listener
//! connection hears of their topic (and once a second regardless, in case a notification was
//! lost), so they resume after a reconnect with no gap and no duplicate.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use courier_traits::bus::{
    BusCapabilities, BusError, Message, MessageBus, MessageId, Position, Published, SubscribeFrom,
    Subscription, Topic,
};
use futures::TryStreamExt;
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{PgPool, Row};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::errors::is_transient;
use super::notifier::Notifier;
use crate::outbox::Outbox;
use crate::payload_limit;
use crate::sequence_position::{self, position};
use crate::wakers::Wakers;

const CHANNEL: &str = "courier_bus";

/// Settings of a [`PgBus`]: start from `default()` and change what you need with the `with_*`
/// methods.
///
/// ```
/// use courier_impls::postgres::PgBusConfig;
/// let config = PgBusConfig::default().with_max_connections(4);
/// assert_eq!(config.max_connections, 4);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PgBusConfig {
    /// Messages kept per topic; older ones are deleted and can no longer be resumed from.
    pub max_len_per_topic: i64,
    /// Messages buffered per subscriber before it starts losing the newest (and is told so).
    pub subscriber_buffer: usize,
    /// Largest payload accepted.
    pub max_payload_bytes: usize,
    /// Connections in the pool (the listener uses one more).
    pub max_connections: u32,
}

impl Default for PgBusConfig {
    fn default() -> Self {
        PgBusConfig {
            max_len_per_topic: 100_000,
            subscriber_buffer: 1024,
            max_payload_bytes: 16 << 20,
            max_connections: 10,
        }
    }
}

impl PgBusConfig {
    /// Sets [`max_len_per_topic`](Self::max_len_per_topic) (default 100 000).
    pub fn with_max_len_per_topic(mut self, messages: i64) -> PgBusConfig {
        self.max_len_per_topic = messages;
        self
    }

    /// Sets [`subscriber_buffer`](Self::subscriber_buffer) (default 1024; at least 1).
    pub fn with_subscriber_buffer(mut self, messages: usize) -> PgBusConfig {
        self.subscriber_buffer = messages;
        self
    }

    /// Sets [`max_payload_bytes`](Self::max_payload_bytes) (default 16 MiB).
    pub fn with_max_payload_bytes(mut self, bytes: usize) -> PgBusConfig {
        self.max_payload_bytes = bytes;
        self
    }

    /// Sets [`max_connections`](Self::max_connections) (default 10; at least 1).
    pub fn with_max_connections(mut self, connections: u32) -> PgBusConfig {
        self.max_connections = connections;
        self
    }
}

/// A message bus in Postgres; instances on one database act as one.
///
/// ```no_run
/// # async fn demo() -> Result<(), courier_traits::BusError> {
/// use courier_impls::postgres::{PgBus, PgBusConfig};
/// use courier_traits::bus::{MessageBus, SubscribeFrom, Topic};
///
/// let bus = PgBus::connect("postgres://postgres@127.0.0.1/postgres", PgBusConfig::default()).await?;
/// let topic = Topic::new("broadcast")?;
/// let _sub = bus.subscribe(&topic, SubscribeFrom::Live).await?;
/// bus.publish(&topic, "hello".into()).await?;
/// # Ok(()) }
/// ```
pub struct PgBus {
    pool: PgPool,
    config: PgBusConfig,
    wakers: Arc<Wakers>,
    /// Sends the publishes' notifications after their commit (see `notifier.rs`).
    notifier: Arc<Notifier>,
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
}

fn bus_error(error: sqlx::Error) -> BusError {
    BusError::backend(
        is_transient(&error),
        format!("postgres: {error}"),
        Some(Box::new(error)),
    )
}

fn parse_position(position: &Position) -> Result<i64, BusError> {
    sequence_position::number(position, "a PgBus sequence number")
}

impl PgBus {
    /// Connects to `url`, creates the tables if missing, and starts the listener.
    pub async fn connect(url: &str, config: PgBusConfig) -> Result<PgBus, BusError> {
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(bus_error)?;
        let mut tx = pool.begin().await.map_err(bus_error)?;
        sqlx::query("SELECT pg_advisory_xact_lock(7361297)")
            .execute(&mut *tx)
            .await
            .map_err(bus_error)?;
        for statement in [
            "CREATE TABLE IF NOT EXISTS courier_bus_topics (topic TEXT PRIMARY KEY, last_seq BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS courier_bus_messages (
                topic TEXT NOT NULL, seq BIGINT NOT NULL, id TEXT NOT NULL, payload BYTEA NOT NULL,
                PRIMARY KEY (topic, seq))",
        ] {
            sqlx::query(statement)
                .execute(&mut *tx)
                .await
                .map_err(bus_error)?;
        }
        tx.commit().await.map_err(bus_error)?;
        let wakers = Arc::new(Wakers::default());
        let stop = CancellationToken::new();
        let listener = PgListener::connect_with(&pool).await.map_err(bus_error)?;
        let notifier = Notifier::start(&pool, CHANNEL, stop.clone());
        tokio::spawn(super::listener::listen(
            listener,
            CHANNEL,
            wakers.clone(),
            notifier.own_process(),
            stop.clone(),
        ));
        let guard = stop.clone().drop_guard();
        Ok(PgBus {
            pool,
            config,
            wakers,
            notifier,
            stop,
            _stop_on_drop: guard,
        })
    }

    fn ensure_open(&self) -> Result<(), BusError> {
        if self.stop.is_cancelled() {
            Err(BusError::Closed)
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl MessageBus for PgBus {
    async fn publish_with_id(
        &self,
        topic: &Topic,
        id: MessageId,
        payload: Bytes,
    ) -> Result<Published, BusError> {
        self.ensure_open()?;
        payload_limit::check(&payload, self.config.max_payload_bytes)?;
        // One statement, so one round trip: it takes the topic's next sequence number under
        // the topic row's lock and inserts the message, and commits on its own (the lock is
        // held until then, so sequence order is still commit order). An explicit transaction
        // cost three more round trips (begin, a second statement, commit).
        let seq: i64 = sqlx::query_scalar(
            "WITH next AS (
                 INSERT INTO courier_bus_topics (topic, last_seq) VALUES ($1, 1)
                 ON CONFLICT (topic) DO UPDATE SET last_seq = courier_bus_topics.last_seq + 1
                 RETURNING last_seq
             )
             INSERT INTO courier_bus_messages (topic, seq, id, payload)
             SELECT $1, last_seq, $2, $3 FROM next RETURNING seq",
        )
        .bind(topic.as_str())
        .bind(id.as_str())
        .bind(&payload[..])
        .fetch_one(&self.pool)
        .await
        .map_err(bus_error)?;
        // Trim in steps, not on every publish; after the commit, so a failed trim (retried at
        // the next step) never fails a publish that was stored.
        if seq % 1000 == 0 {
            let trimmed =
                sqlx::query("DELETE FROM courier_bus_messages WHERE topic = $1 AND seq <= $2")
                    .bind(topic.as_str())
                    .bind(seq - self.config.max_len_per_topic)
                    .execute(&self.pool)
                    .await;
            if let Err(error) = trimmed {
                tracing::warn!(topic = %topic.as_str(), %error, "postgres bus: trimming old messages failed; the next step retries");
            }
        }
        // Notified after the commit, not inside the statement: transactions that notify
        // commit one at a time (see `notifier.rs`), so publishes to different topics could
        // not share an fsync. This node's subscribers are woken at once.
        self.wakers.wake(topic.as_str());
        self.notifier.queue(topic.as_str());
        Ok(Published {
            id,
            position: Some(position(seq)),
        })
    }

    async fn subscribe(
        &self,
        topic: &Topic,
        from: SubscribeFrom,
    ) -> Result<Subscription, BusError> {
        self.ensure_open()?;
        let last: i64 = sqlx::query_scalar(
            "SELECT COALESCE((SELECT last_seq FROM courier_bus_topics WHERE topic = $1), 0)",
        )
        .bind(topic.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(bus_error)?;
        let after = match &from {
            SubscribeFrom::Live => last,
            SubscribeFrom::After(requested) => {
                let after = parse_position(requested)?;
                let oldest: Option<i64> = sqlx::query_scalar(
                    "SELECT min(seq) FROM courier_bus_messages WHERE topic = $1",
                )
                .bind(topic.as_str())
                .fetch_one(&self.pool)
                .await
                .map_err(bus_error)?;
                let first_kept = oldest.unwrap_or(last + 1);
                if after + 1 < first_kept && after < last {
                    return Err(BusError::PositionUnavailable {
                        position: requested.clone(),
                        reason: format!("messages before {} were trimmed", position(first_kept)),
                    });
                }
                after
            }
        };
        let (outbox, subscription) = Outbox::new(self.config.subscriber_buffer);
        let reader = Reader {
            pool: self.pool.clone(),
            topic: topic.clone(),
            after,
            outbox,
        };
        let woken = self.wakers.subscribe(topic.as_str());
        tokio::spawn(reader.run(woken, self.stop.child_token()));
        Ok(subscription)
    }

    fn capabilities(&self) -> BusCapabilities {
        BusCapabilities {
            persistent: true,
            resume: true,
            ordered: true,
            exactly_once: true,
            lag_reporting: true,
            shared: true,
            survives_restart: true,
        }
    }

    async fn close(&self) -> Result<(), BusError> {
        self.stop.cancel();
        Ok(())
    }
}

/// One subscription's task: reads rows after `after` when woken, forwards them.
struct Reader {
    pool: PgPool,
    topic: Topic,
    after: i64,
    outbox: Outbox,
}

impl Reader {
    async fn run(mut self, mut woken: tokio::sync::watch::Receiver<u64>, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let pause = match self.read_page().await {
                Ok(true) => continue, // a full page: there may be more right away
                Ok(false) => {
                    backoff = Duration::from_millis(100);
                    Duration::from_secs(1)
                }
                Err(error) => {
                    tracing::debug!(%error, topic = %self.topic, "postgres bus read failed; retrying");
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    backoff
                }
            };
            let tx = self.outbox.sender();
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tx.closed() => return,
                permit = tx.reserve(), if self.outbox.pending_loss() > 0 => match permit {
                    Ok(permit) => self.outbox.report_loss(permit),
                    Err(_) => return,
                },
                _ = woken.changed() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Forwards the next page of rows; true if the page was full.
    async fn read_page(&mut self) -> Result<bool, sqlx::Error> {
        const PAGE: i64 = 512;
        let mut rows = sqlx::query("SELECT seq, id, payload FROM courier_bus_messages WHERE topic = $1 AND seq > $2 ORDER BY seq LIMIT $3")
            .bind(self.topic.as_str())
            .bind(self.after)
            .bind(PAGE)
            .fetch(&self.pool);
        let mut count = 0;
        while let Some(row) = rows.try_next().await? {
            let seq: i64 = row.try_get("seq")?;
            let id: String = row.try_get("id")?;
            let payload: Vec<u8> = row.try_get("payload")?;
            self.after = seq;
            count += 1;
            // Only `publish_with_id` writes this table, with ids it has validated.
            let Ok(id) = MessageId::parse(&id) else {
                tracing::warn!(topic = %self.topic, seq, "skipping a row whose id is not a message id");
                continue;
            };
            self.outbox.deliver(Message {
                id,
                topic: self.topic.clone(),
                payload: Bytes::from(payload),
                position: Some(position(seq)),
            });
        }
        Ok(count == PAGE)
    }
}
