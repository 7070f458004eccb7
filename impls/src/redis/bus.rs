//! [`RedisBus`]: fan-out over Redis Streams, one stream per topic.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use courier_traits::bus::{
    BusCapabilities, BusError, Message, MessageBus, MessageId, Published, SubscribeFrom,
    Subscription, Topic,
};
use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;
use redis::{self, AsyncConnectionConfig, Value};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::durability::warn_unless_durable;
use std::sync::Arc;

use super::connection::SharedConnection;
use super::errors::bus_error;
use super::position::EntryId;
use super::pubsub;
use crate::frame;
use crate::outbox::Outbox;
use crate::payload_limit;

/// How a [`RedisBus`] delivers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RedisDelivery {
    /// Redis Streams: durable as far as the server persists, ordered, resumable from a
    /// position; a subscription survives a server restart without a gap.
    #[default]
    Streams,
    /// Redis pub/sub: at most once. Nothing is stored, positions and resume are not
    /// available, and messages published while a subscriber is disconnected are lost
    /// uncounted. Faster and lighter on the server.
    PubSub,
}

/// Settings of a [`RedisBus`]: start from `default()` and change what you need with the
/// `with_*` methods.
///
/// ```
/// use courier_impls::redis::{RedisBusConfig, RedisDelivery};
/// let config = RedisBusConfig::default()
///     .with_key_prefix("orders:bus")
///     .with_delivery(RedisDelivery::PubSub);
/// assert_eq!(config.key_prefix, "orders:bus");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RedisBusConfig {
    /// Streams (default, at least once with resume) or pub/sub (at most once).
    pub delivery: RedisDelivery,
    /// Key prefix: topic `t` lives in the stream `<prefix>:<t>`.
    pub key_prefix: String,
    /// Approximate number of messages kept per topic (`XADD MAXLEN ~`); older ones are trimmed
    /// and can no longer be resumed from.
    pub max_len_per_topic: u64,
    /// Messages buffered per subscriber before it starts losing the newest (and is told so).
    pub subscriber_buffer: usize,
    /// Largest payload accepted.
    pub max_payload_bytes: usize,
    /// How long one blocking read waits before checking for cancellation.
    pub block: Duration,
}

impl Default for RedisBusConfig {
    fn default() -> Self {
        RedisBusConfig {
            delivery: RedisDelivery::Streams,
            key_prefix: "courier:bus".into(),
            max_len_per_topic: 100_000,
            subscriber_buffer: 1024,
            max_payload_bytes: 16 << 20,
            block: Duration::from_secs(1),
        }
    }
}

impl RedisBusConfig {
    /// Sets [`delivery`](Self::delivery) (default [`RedisDelivery::Streams`]).
    pub fn with_delivery(mut self, delivery: RedisDelivery) -> RedisBusConfig {
        self.delivery = delivery;
        self
    }

    /// Sets [`key_prefix`](Self::key_prefix) (default `courier:bus`).
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> RedisBusConfig {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets [`max_len_per_topic`](Self::max_len_per_topic) (default 100 000).
    pub fn with_max_len_per_topic(mut self, messages: u64) -> RedisBusConfig {
        self.max_len_per_topic = messages;
        self
    }

    /// Sets [`subscriber_buffer`](Self::subscriber_buffer) (default 1024; at least 1).
    pub fn with_subscriber_buffer(mut self, messages: usize) -> RedisBusConfig {
        self.subscriber_buffer = messages;
        self
    }

    /// Sets [`max_payload_bytes`](Self::max_payload_bytes) (default 16 MiB).
    pub fn with_max_payload_bytes(mut self, bytes: usize) -> RedisBusConfig {
        self.max_payload_bytes = bytes;
        self
    }

    /// Sets [`block`](Self::block) (default 1 s).
    pub fn with_block(mut self, block: Duration) -> RedisBusConfig {
        self.block = block;
        self
    }
}

/// A message bus over Redis Streams: durable (as far as the server's persistence goes),
/// ordered, resumable from any retained position; instances on one server act as one.
///
/// Publishes share one multiplexed connection (replaced after a connection failure). Every
/// subscription reads on a connection of its
/// own (`XREAD BLOCK`), so blocked readers never take connections from publishers.
///
/// ```no_run
/// # async fn demo() -> Result<(), courier_traits::BusError> {
/// use courier_impls::redis::{RedisBus, RedisBusConfig};
/// use courier_traits::bus::{MessageBus, SubscribeFrom, Topic};
///
/// let bus = RedisBus::connect("redis://127.0.0.1:6379/", RedisBusConfig::default()).await?;
/// let topic = Topic::new("broadcast")?;
/// let _sub = bus.subscribe(&topic, SubscribeFrom::Live).await?;
/// bus.publish(&topic, "hello".into()).await?;
/// # Ok(()) }
/// ```
pub struct RedisBus {
    client: redis::Client,
    /// Where publishes go.
    conn: Arc<SharedConnection>,
    config: RedisBusConfig,
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
}

impl RedisBus {
    /// Connects to the server at `url` (`redis://host:port/db`), checking that it answers. With
    /// Streams delivery, logs a warning when the server's persistence settings do not keep
    /// acknowledged publishes ([`server_durability`](super::server_durability)).
    pub async fn connect(url: &str, config: RedisBusConfig) -> Result<RedisBus, BusError> {
        let client = redis::Client::open(url).map_err(|e| bus_error("url", e))?;
        // No response timeout, as with the pool before: a frozen server holds publishes until
        // it answers (callers bound their own waits); a failed connection is replaced.
        let settings = AsyncConnectionConfig::new()
            .set_response_timeout(None)
            .set_connection_timeout(Some(CONNECT_TIMEOUT));
        let conn = Arc::new(SharedConnection::new(client.clone(), settings));
        let mut first = conn.get().await.map_err(|e| bus_error("connection", e))?;
        let _: String = redis::cmd("PING")
            .query_async(&mut first)
            .await
            .map_err(|e| bus_error("ping", e))?;
        // Pub/sub delivery keeps nothing, so only Streams delivery depends on persistence.
        if config.delivery == RedisDelivery::Streams {
            warn_unless_durable(&mut first, "RedisBus").await;
        }
        let stop = CancellationToken::new();
        let guard = stop.clone().drop_guard();
        Ok(RedisBus {
            client,
            conn,
            config,
            stop,
            _stop_on_drop: guard,
        })
    }

    fn key(&self, topic: &Topic) -> String {
        format!("{}:{}", self.config.key_prefix, topic)
    }

    fn ensure_open(&self) -> Result<(), BusError> {
        if self.stop.is_cancelled() {
            Err(BusError::Closed)
        } else {
            Ok(())
        }
    }

    /// A connection for one subscription's blocking reads (no response timeout: the block
    /// timeout bounds each read).
    async fn reader_connection(&self) -> Result<MultiplexedConnection, BusError> {
        reader_connection(&self.client).await
    }
}

/// How long opening a connection may take before it fails with a retryable error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

async fn reader_connection(client: &redis::Client) -> Result<MultiplexedConnection, BusError> {
    let config = AsyncConnectionConfig::new()
        .set_response_timeout(None)
        .set_connection_timeout(Some(CONNECT_TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| bus_error("connect", e))
}

/// The newest entry id of `key` (`0-0` if the stream is empty or absent).
async fn last_id(conn: &mut MultiplexedConnection, key: &str) -> Result<EntryId, BusError> {
    let reply: Value = redis::cmd("XREVRANGE")
        .arg(key)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await
        .map_err(|e| bus_error("xrevrange", e))?;
    let id = match reply {
        Value::Array(entries) => entries.into_iter().next().and_then(|entry| match entry {
            Value::Array(mut parts) if !parts.is_empty() => match parts.swap_remove(0) {
                Value::BulkString(id) => String::from_utf8(id).ok(),
                _ => None,
            },
            _ => None,
        }),
        _ => None,
    };
    Ok(id
        .as_deref()
        .and_then(EntryId::parse)
        .unwrap_or(EntryId::ZERO))
}

/// Fails if entries after `after` may have been trimmed away (resuming would skip them).
///
/// Redis does not record trimmed ids, so this is conservative: when anything was ever
/// removed (`entries-added > length`) and `after` lies before the first retained entry, the
/// resume is refused, even in the rare case that `after` was exactly the last entry removed.
async fn check_retained(
    conn: &mut MultiplexedConnection,
    key: &str,
    after: EntryId,
) -> Result<(), BusError> {
    let info: Result<Value, _> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(key)
        .query_async(conn)
        .await;
    let info = match info {
        Ok(info) => info,
        Err(e) if e.to_string().contains("no such key") => return Ok(()),
        Err(e) => return Err(bus_error("xinfo", e)),
    };
    let Value::Array(fields) = info else {
        return Ok(());
    };
    let field = |name: &[u8]| {
        fields.chunks(2).find_map(|pair| match pair {
            [Value::BulkString(n), value] if n == name => Some(value.clone()),
            _ => None,
        })
    };
    let number = |name: &[u8]| match field(name) {
        Some(Value::Int(n)) => Some(n),
        _ => None,
    };
    let first = match field(b"recorded-first-entry-id") {
        Some(Value::BulkString(id)) => String::from_utf8(id)
            .ok()
            .as_deref()
            .and_then(EntryId::parse),
        _ => None,
    };
    let removed_any = matches!((number(b"entries-added"), number(b"length")), (Some(added), Some(len)) if added > len);
    match first {
        Some(first) if removed_any && after < first && first != EntryId::ZERO => {
            Err(BusError::PositionUnavailable {
                position: after.position(),
                reason: format!("entries before {} were trimmed (MAXLEN)", first.redis()),
            })
        }
        _ => Ok(()),
    }
}

#[async_trait]
impl MessageBus for RedisBus {
    async fn publish_with_id(
        &self,
        topic: &Topic,
        id: MessageId,
        payload: Bytes,
    ) -> Result<Published, BusError> {
        self.ensure_open()?;
        payload_limit::check(&payload, self.config.max_payload_bytes)?;
        let mut conn = self
            .conn
            .get()
            .await
            .map_err(|e| bus_error("connection", e))?;
        if self.config.delivery == RedisDelivery::PubSub {
            let _receivers: i64 = redis::cmd("PUBLISH")
                .arg(self.key(topic))
                .arg(frame::encode(&id, &payload))
                .query_async(&mut conn)
                .await
                .map_err(|e| bus_error("publish", e))?;
            return Ok(Published { id, position: None });
        }
        let entry: String = redis::cmd("XADD")
            .arg(self.key(topic))
            .arg("MAXLEN")
            .arg("~")
            .arg(self.config.max_len_per_topic)
            .arg("*")
            .arg("i")
            .arg(id.as_str())
            .arg("p")
            .arg(&payload[..])
            .query_async(&mut conn)
            .await
            .map_err(|e| bus_error("xadd", e))?;
        let position = EntryId::parse(&entry).map(|e| e.position());
        Ok(Published { id, position })
    }

    async fn subscribe(
        &self,
        topic: &Topic,
        from: SubscribeFrom,
    ) -> Result<Subscription, BusError> {
        self.ensure_open()?;
        let key = self.key(topic);
        if self.config.delivery == RedisDelivery::PubSub {
            if let SubscribeFrom::After(_) = from {
                return Err(BusError::Unsupported(
                    "resume from a position (pub/sub delivery keeps no history)",
                ));
            }
            let buffer = self.config.subscriber_buffer;
            return pubsub::subscribe(
                self.client.clone(),
                key,
                topic.clone(),
                buffer,
                self.stop.child_token(),
            )
            .await;
        }
        let mut conn = self.reader_connection().await?;
        // Resolve "now" before returning, so a publish right after subscribe is not missed.
        let after = match &from {
            SubscribeFrom::Live => last_id(&mut conn, &key).await?,
            SubscribeFrom::After(position) => {
                let after = EntryId::from_position(position)?;
                check_retained(&mut conn, &key, after).await?;
                after
            }
        };
        let (outbox, subscription) = Outbox::new(self.config.subscriber_buffer);
        let reader = Reader {
            client: self.client.clone(),
            key,
            topic: topic.clone(),
            after,
            block_ms: self.config.block.as_millis().max(1) as u64,
            outbox,
        };
        tokio::spawn(reader.run(conn, self.stop.child_token()));
        Ok(subscription)
    }

    fn capabilities(&self) -> BusCapabilities {
        if self.config.delivery == RedisDelivery::PubSub {
            return BusCapabilities {
                ordered: true,
                exactly_once: true,
                lag_reporting: true,
                shared: true,
                ..BusCapabilities::NONE
            };
        }
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

/// One subscription's reader task: owns its connection and the outbox; stops when the
/// subscription is dropped or the bus closes.
struct Reader {
    client: redis::Client,
    key: String,
    topic: Topic,
    /// The last entry delivered (or dropped as lag).
    after: EntryId,
    block_ms: u64,
    outbox: Outbox,
}

impl Reader {
    async fn run(mut self, mut conn: MultiplexedConnection, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let tx = self.outbox.sender();
            let mut command = redis::cmd("XREAD");
            command
                .arg("COUNT")
                .arg(512)
                .arg("BLOCK")
                .arg(self.block_ms)
                .arg("STREAMS")
                .arg(&self.key)
                .arg(self.after.redis());
            let read = command.query_async::<Option<StreamReadReply>>(&mut conn);
            let outcome = tokio::select! {
                _ = stop.cancelled() => return,
                _ = tx.closed() => return,
                permit = tx.reserve(), if self.outbox.pending_loss() > 0 => {
                    match permit {
                        Ok(permit) => self.outbox.report_loss(permit),
                        Err(_) => return,
                    }
                    continue;
                }
                outcome = read => outcome,
            };
            match outcome {
                Ok(reply) => {
                    backoff = Duration::from_millis(100);
                    self.forward(reply);
                }
                Err(error) => {
                    tracing::debug!(%error, topic = %self.topic, "redis subscription read failed; reconnecting");
                    // Reconnect from the last entry delivered: no gap, no duplicate.
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tx.closed() => return,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        match reader_connection(&self.client).await {
                            Ok(mut fresh) => {
                                match check_retained(&mut fresh, &self.key, self.after).await {
                                    Ok(()) => {
                                        conn = fresh;
                                        break;
                                    }
                                    Err(e @ BusError::PositionUnavailable { .. }) => {
                                        self.outbox.fail(e).await;
                                        return;
                                    }
                                    Err(_) => continue,
                                }
                            }
                            Err(_) => continue,
                        }
                    }
                }
            }
        }
    }

    fn forward(&mut self, reply: Option<StreamReadReply>) {
        let entries = reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids);
        for entry in entries {
            let Some(id) = EntryId::parse(&entry.id) else {
                continue;
            };
            self.after = id;
            let message_id: Option<String> = entry.get("i");
            let message_id = message_id.and_then(|id| MessageId::parse(&id).ok());
            let payload: Option<Vec<u8>> = entry.get("p");
            let (Some(message_id), Some(payload)) = (message_id, payload) else {
                tracing::warn!(topic = %self.topic, entry = %entry.id, "skipping an entry that is not a Courier message");
                continue;
            };
            self.outbox.deliver(Message {
                id: message_id,
                topic: self.topic.clone(),
                payload: Bytes::from(payload),
                position: Some(id.position()),
            });
        }
    }
}
