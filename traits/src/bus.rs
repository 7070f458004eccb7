//! [`MessageBus`]: topic fan-out between tasks, processes and nodes.
//!
//! # Semantics
//!
//! * **Fan-out.** Every live subscription on a topic receives every message published to that
//!   topic after the subscription started. Subscriptions do not compete for messages.
//! * **Acceptance.** [`publish`](MessageBus::publish) returns once the backend has accepted the
//!   message; a persistent backend has durably written it by then. It returns the message's id
//!   and, where the backend has one, its [`Position`].
//! * **Ids.** Every delivery of a message carries the id it was published with: the caller's
//!   ([`publish_with_id`](MessageBus::publish_with_id)) or a random one
//!   ([`publish`](MessageBus::publish)). The bus does not deduplicate: two publishes with the
//!   same id are two messages, both delivered with that id.
//! * **Backpressure.** A slow subscriber never blocks publishers or other subscribers and never
//!   grows memory without bound: each subscription has a bounded buffer, and on overflow it gets
//!   [`BusError::Lagged`] with the number of messages it lost, then continues with newer ones.
//!   Loss is never silent.
//! * **Resume.** Backends with [`BusCapabilities::resume`] accept [`SubscribeFrom::After`]: the
//!   subscription replays what followed that position, then goes live. After a reconnect there
//!   is no gap; duplicates are possible and recognisable by [`Message::id`].
//! * **Close.** [`close`](MessageBus::close) ends every subscription (their streams finish);
//!   later calls return [`BusError::Closed`].
//!
//! # Cancellation
//!
//! Dropping a [`Subscription`] unsubscribes. Dropping a `publish` future before it resolves
//! leaves it unknown whether the message was accepted. To retry safely, choose the id before
//! the first attempt and publish every attempt with it
//! ([`publish_with_id`](MessageBus::publish_with_id)); subscribers then drop what they have
//! already seen by [`Message::id`].

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::error::{BoxError, Classify, ErrorClass, InvalidInput};

/// Longest topic name accepted, in bytes.
pub const MAX_TOPIC_LEN: usize = 256;

/// Checks that `value` has 1 to `max_len` bytes of ASCII letters, digits, `. _ - : @` and the
/// characters of `extra`, naming `field` and the problem if not.
fn check_name(
    field: &'static str,
    value: &str,
    max_len: usize,
    extra: &str,
) -> Result<(), InvalidInput> {
    let bad = |reason: &str| InvalidInput::new(field, value, reason);
    if value.is_empty() {
        return Err(bad("must not be empty"));
    }
    if value.len() > max_len {
        return Err(bad(&format!("longer than {max_len} bytes")));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || ".-_:@".contains(c) || extra.contains(c);
    if let Some(c) = value.chars().find(|c| !allowed(*c)) {
        let extra: String = extra.chars().flat_map(|c| [' ', c]).collect();
        return Err(bad(&format!(
            "character {c:?} is not allowed (use A-Z a-z 0-9 . _ - : @{extra})"
        )));
    }
    Ok(())
}

/// A validated topic name.
///
/// Allowed: 1 to [`MAX_TOPIC_LEN`] bytes of ASCII letters, digits and `. _ - : @ /`, where `/`
/// separates non-empty segments (`broadcast`, `unicast/client-42`). Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(Arc<str>);

impl Topic {
    /// Validates `name` as a topic.
    ///
    /// ```
    /// use courier_traits::bus::Topic;
    /// assert!(Topic::new("unicast/client-42").is_ok());
    /// assert!(Topic::new("bad topic").is_err());
    /// ```
    pub fn new(name: &str) -> Result<Topic, InvalidInput> {
        check_name("topic", name, MAX_TOPIC_LEN, "/")?;
        if name.split('/').any(str::is_empty) {
            return Err(InvalidInput::new(
                "topic",
                name,
                "'/' must separate non-empty segments",
            ));
        }
        Ok(Topic(Arc::from(name)))
    }

    /// The topic name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Topic({:?})", &*self.0)
    }
}

impl std::str::FromStr for Topic {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Topic::new(s)
    }
}

/// A backend's position of a message within its topic: where a subscription can resume
/// ([`SubscribeFrom::After`]).
///
/// Opaque: only the backend that handed it out knows what it means. Positions of one topic
/// sort in publish order, so `a < b` means `a` was published first. To keep one across
/// restarts, store its text ([`as_str`](Self::as_str) or `Display`) and make it again with
/// [`Position::new`]; the backend checks it when it is used and refuses a foreign one with
/// [`BusError::InvalidInput`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Position(String);

impl Position {
    /// A position from its text, as a backend wrote it (or as stored from
    /// [`as_str`](Self::as_str)).
    pub fn new(text: impl Into<String>) -> Position {
        Position(text.into())
    }

    /// The position as text, for storing it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Longest message id accepted, in bytes.
pub const MAX_MESSAGE_ID_LEN: usize = 128;

/// A message's id: subscribers receive it with every delivery of the message and use it to
/// recognise duplicates.
///
/// Either the caller chooses it ([`MessageBus::publish_with_id`]; [`MessageId::random`] makes
/// a fresh one, or [`MessageId::parse`] takes the caller's own key) or
/// [`publish`](MessageBus::publish) makes a random one. A caller who creates the id before
/// publishing knows it even when the publish future is dropped, and can publish again under
/// the same id. Allowed: 1 to [`MAX_MESSAGE_ID_LEN`] bytes of ASCII letters, digits and
/// `. _ - : @`. Cheap to compare, not to clone (it is a string).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct MessageId(String);

impl MessageId {
    /// A new random id (128 bits, 32 hex digits), unique for all practical purposes.
    pub fn random() -> MessageId {
        MessageId(format!("{:032x}", random_u128()))
    }

    /// Validates `id` as a message id (a key of the caller's, say, or an id read back).
    ///
    /// ```
    /// use courier_traits::bus::MessageId;
    /// assert_eq!(MessageId::parse("order-42").unwrap().as_str(), "order-42");
    /// assert!(MessageId::parse("order 42").is_err());
    /// ```
    pub fn parse(id: &str) -> Result<MessageId, InvalidInput> {
        check_name("message id", id, MAX_MESSAGE_ID_LEN, "")?;
        Ok(MessageId(id.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for MessageId {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MessageId::parse(s)
    }
}

// A dependency-free random source for ids: std's RandomState is seeded from OS randomness
// per process and mixed with a counter, which is enough for uniqueness (not for secrets).
fn random_u128() -> u128 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let state = RandomState::new();
    let half = |salt: u64| {
        let mut h = state.build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u64(salt);
        h.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

/// A message as delivered to subscribers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The id it was published with, the same on every delivery of this message.
    pub id: MessageId,
    /// The topic it was published to.
    pub topic: Topic,
    /// The payload, unchanged.
    pub payload: Bytes,
    /// Where the backend stored it, if the backend has positions.
    pub position: Option<Position>,
}

/// What `publish` returns once the backend has accepted a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// The id the message will be delivered with.
    pub id: MessageId,
    /// Its position, for backends with positions.
    pub position: Option<Position>,
}

/// Where a new subscription starts.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum SubscribeFrom {
    /// Only messages published after the subscription started.
    #[default]
    Live,
    /// Messages after this position (exclusive), then live. Needs [`BusCapabilities::resume`].
    After(Position),
}

/// What a backend promises, as data: the universal suite runs the cases each flag promises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BusCapabilities {
    /// Accepted messages survive a restart of the backend server.
    pub persistent: bool,
    /// [`SubscribeFrom::After`] works: a subscriber can resume from a position without a gap.
    pub resume: bool,
    /// One publisher's messages reach each subscriber in publish order.
    pub ordered: bool,
    /// A subscriber never sees the same message twice (otherwise: dedupe by id).
    pub exactly_once: bool,
    /// A subscriber that falls behind its buffer is told how many messages it lost.
    pub lag_reporting: bool,
    /// Several bus instances on one backend act as one (publishes reach every instance's subscribers).
    pub shared: bool,
    /// Subscriptions survive a restart of the backend server and resume by themselves.
    pub survives_restart: bool,
}

impl BusCapabilities {
    /// All flags false; set the ones the backend promises.
    pub const NONE: BusCapabilities = BusCapabilities {
        persistent: false,
        resume: false,
        ordered: false,
        exactly_once: false,
        lag_reporting: false,
        shared: false,
        survives_restart: false,
    };
}

/// The stream of messages for one subscription.
///
/// Items are messages, or [`BusError::Lagged`] (not terminal: the stream continues; not
/// retryable either, the lost messages are gone), or a terminal error after which the stream
/// ends. The stream ends when the bus is closed.
pub type Subscription = BoxStream<'static, Result<Message, BusError>>;

/// Errors of a [`MessageBus`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The bus was closed; nothing more is accepted.
    #[error("message bus is closed")]
    Closed,
    /// This subscriber fell behind and lost `missed` messages; delivery continues after them.
    /// Not retryable: the lost messages are gone (resume from a position, where the backend
    /// has [`BusCapabilities::resume`], to read them again).
    #[error("subscriber lagged behind and missed {missed} messages")]
    Lagged {
        /// How many messages were dropped for this subscriber.
        missed: u64,
    },
    /// A topic, payload or position was rejected.
    #[error(transparent)]
    InvalidInput(#[from] InvalidInput),
    /// The payload exceeds the backend's limit.
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// Payload size.
        size: usize,
        /// The backend's limit.
        limit: usize,
    },
    /// The backend cannot resume from this position (e.g. it was compacted or trimmed away).
    #[error("cannot resume from position {position}: {reason}")]
    PositionUnavailable {
        /// The requested position.
        position: Position,
        /// Why (compacted, trimmed, unknown epoch).
        reason: String,
    },
    /// The operation needs a capability this backend lacks.
    #[error("not supported by this backend: {0}")]
    Unsupported(&'static str),
    /// The backend could not be reached or did not answer in time; retry later.
    #[error("backend unavailable: {message}")]
    Unavailable {
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// The backend answered with an error that retrying will not fix.
    #[error("backend error: {message}")]
    Backend {
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
}

impl BusError {
    /// A failure the backend reported: [`Unavailable`](BusError::Unavailable) when `retryable`
    /// (connection lost, timeout, server restarting), otherwise
    /// [`Backend`](BusError::Backend). Each backend decides `retryable` from its own error
    /// kinds; this keeps the mapping onto the two variants in one place.
    pub fn backend(retryable: bool, message: impl Into<String>, source: Option<BoxError>) -> Self {
        let message = message.into();
        if retryable {
            BusError::Unavailable { message, source }
        } else {
            BusError::Backend { message, source }
        }
    }
}

impl Classify for BusError {
    // `Lagged` is not retryable: the messages it counts are gone, and retrying cannot bring
    // them back. It is reported so the subscriber can react (resync, resume from a position).
    fn class(&self) -> ErrorClass {
        match self {
            BusError::Unavailable { .. } => ErrorClass::TRANSIENT,
            _ => ErrorClass::Permanent,
        }
    }
}

/// Topic fan-out between tasks, processes and nodes. See the [module docs](self) for the
/// guarantees every implementation keeps.
///
/// # Example
///
/// ```
/// use courier_traits::bus::{MessageBus, SubscribeFrom, Topic};
/// use futures::StreamExt;
///
/// async fn echo_one(bus: &dyn MessageBus) -> Result<(), courier_traits::bus::BusError> {
///     let topic = Topic::new("broadcast")?;
///     let mut sub = bus.subscribe(&topic, SubscribeFrom::Live).await?;
///     bus.publish(&topic, "hello".into()).await?;
///     let msg = sub.next().await.expect("bus still open")?;
///     assert_eq!(&msg.payload[..], b"hello");
///     Ok(())
/// }
/// ```
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait MessageBus: Send + Sync {
    /// Publishes `payload` to `topic` under a new random id; returns once the backend
    /// accepted it. The id is in the answer; a caller who needs it even when the answer is
    /// lost (to retry without a duplicate it cannot recognise) uses
    /// [`publish_with_id`](Self::publish_with_id).
    ///
    /// Errors: as [`publish_with_id`](Self::publish_with_id).
    async fn publish(&self, topic: &Topic, payload: Bytes) -> Result<Published, BusError> {
        self.publish_with_id(topic, MessageId::random(), payload)
            .await
    }

    /// Publishes `payload` to `topic` under the caller's `id`; returns once the backend
    /// accepted it. Subscribers receive the message with exactly this id. The bus does not
    /// deduplicate: publishing twice with one id delivers two messages with that id, which
    /// subscribers can recognise as one.
    ///
    /// ```
    /// use courier_traits::bus::{BusError, MessageBus, MessageId, Topic};
    ///
    /// async fn publish_once(bus: &dyn MessageBus, topic: &Topic) -> Result<MessageId, BusError> {
    ///     let id = MessageId::random(); // known before the first attempt: keep it for a retry
    ///     bus.publish_with_id(topic, id.clone(), "hello".into()).await?;
    ///     Ok(id)
    /// }
    /// ```
    ///
    /// Errors: [`BusError::Closed`] after [`close`](Self::close); `PayloadTooLarge`;
    /// `Unavailable` (retryable) when the backend cannot be reached.
    async fn publish_with_id(
        &self,
        topic: &Topic,
        id: MessageId,
        payload: Bytes,
    ) -> Result<Published, BusError>;

    /// Subscribes to `topic`. The subscription is registered before this returns, so a
    /// message published after `subscribe` resolves is delivered to it.
    ///
    /// Errors: [`BusError::Closed`]; `Unsupported` for [`SubscribeFrom::After`] without
    /// [`BusCapabilities::resume`]; `PositionUnavailable` when the position is gone.
    async fn subscribe(&self, topic: &Topic, from: SubscribeFrom)
    -> Result<Subscription, BusError>;

    /// What this backend promises.
    fn capabilities(&self) -> BusCapabilities;

    /// Ends every subscription and refuses further calls with [`BusError::Closed`].
    /// Idempotent: closing twice is not an error.
    async fn close(&self) -> Result<(), BusError>;
}

/// A shared bus is a bus: `Arc<dyn MessageBus>` and `Arc<B>` work wherever one is expected.
#[async_trait]
impl<B: MessageBus + ?Sized> MessageBus for Arc<B> {
    async fn publish(&self, topic: &Topic, payload: Bytes) -> Result<Published, BusError> {
        (**self).publish(topic, payload).await
    }
    async fn publish_with_id(
        &self,
        topic: &Topic,
        id: MessageId,
        payload: Bytes,
    ) -> Result<Published, BusError> {
        (**self).publish_with_id(topic, id, payload).await
    }
    async fn subscribe(
        &self,
        topic: &Topic,
        from: SubscribeFrom,
    ) -> Result<Subscription, BusError> {
        (**self).subscribe(topic, from).await
    }
    fn capabilities(&self) -> BusCapabilities {
        (**self).capabilities()
    }
    async fn close(&self) -> Result<(), BusError> {
        (**self).close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_validation_names_the_problem() {
        for good in [
            "broadcast",
            "unicast/client-42",
            "a.b_c-d:e@f",
            &"x".repeat(MAX_TOPIC_LEN),
        ] {
            assert!(Topic::new(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("a b", "' '"),
            ("/lead", "segments"),
            ("trail/", "segments"),
            ("a//b", "segments"),
            ("é", "'é'"),
        ] {
            let err = Topic::new(bad).expect_err(bad);
            assert_eq!(err.field, "topic");
            assert!(err.to_string().contains(why), "{bad}: {err}");
        }
        assert!(Topic::new(&"x".repeat(MAX_TOPIC_LEN + 1)).is_err());
    }

    #[test]
    fn message_id_validation_names_the_problem() {
        for good in [
            "order-42",
            "a.b_c-d:e@f",
            &MessageId::random().to_string(),
            &"x".repeat(MAX_MESSAGE_ID_LEN),
        ] {
            assert_eq!(MessageId::parse(good).expect(good).as_str(), good);
        }
        for (bad, why) in [
            ("", "empty"),
            ("a b", "' '"),
            ("a/b", "'/'"),
            ("é", "'é'"),
            (&"x".repeat(MAX_MESSAGE_ID_LEN + 1), "longer"),
        ] {
            let err = MessageId::parse(bad).expect_err(bad);
            assert_eq!(err.field, "message id");
            assert!(err.to_string().contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn message_ids_are_unique() {
        let ids: std::collections::HashSet<_> = (0..10_000).map(|_| MessageId::random()).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn only_unavailable_is_retryable() {
        assert!(
            BusError::Unavailable {
                message: "x".into(),
                source: None
            }
            .is_retryable()
        );
        assert!(!BusError::Lagged { missed: 3 }.is_retryable());
        assert!(!BusError::Closed.is_retryable());
        assert!(!BusError::Unsupported("resume").is_retryable());
    }

    #[test]
    fn backend_maps_retryable_onto_unavailable() {
        let source = || Some(BoxError::from("cause"));
        let transient = BusError::backend(true, "redis xadd: broken pipe", source());
        assert!(
            matches!(&transient, BusError::Unavailable { message, source: Some(_) } if message == "redis xadd: broken pipe")
        );
        assert!(transient.is_retryable());
        let permanent = BusError::backend(false, "redis xadd: WRONGTYPE", source());
        assert!(
            matches!(&permanent, BusError::Backend { message, source: Some(_) } if message == "redis xadd: WRONGTYPE")
        );
        assert!(!permanent.is_retryable());
        assert!(std::error::Error::source(&permanent).is_some());
    }
}
