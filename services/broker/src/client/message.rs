//! [`Message`]: one delivery, with [`ack`](Message::ack) and [`nack`](Message::nack) routed by
//! the topic its `msg_id` names.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use courier_impls::grpc::proto::danube::{MsgId, StreamMessage};

use super::acks;
use super::error::BrokerError;
use super::partition_consumer::PartitionConsumer;

/// A consumer's partitions by topic name: where acks go.
pub(crate) type Partitions = HashMap<String, Arc<PartitionConsumer>>;

/// A message delivered to a [`Consumer`](super::Consumer).
///
/// On a reliable topic ack it once processed, or nack it for redelivery; unacked messages
/// are redelivered after the broker's ack timeout or when the consumer goes away. On a
/// non-reliable topic both are no-ops.
#[derive(Clone)]
pub struct Message {
    inner: StreamMessage,
    msg_id: MsgId,
    partitions: Arc<Partitions>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("topic", &self.msg_id.topic_name)
            .field("offset", &self.msg_id.topic_offset)
            .field("bytes", &self.inner.payload.len())
            .finish_non_exhaustive()
    }
}

impl Message {
    /// The delivery `inner`; a delivery without `msg_id` breaks the protocol (its ack would
    /// have nowhere to go).
    pub(crate) fn new(
        mut inner: StreamMessage,
        partitions: Arc<Partitions>,
    ) -> Result<Message, BrokerError> {
        let msg_id = inner.msg_id.take().ok_or_else(|| {
            BrokerError::Protocol(format!(
                "a delivery (request {}) has no msg_id",
                inner.request_id
            ))
        })?;
        Ok(Message {
            inner,
            msg_id,
            partitions,
        })
    }

    /// The payload.
    pub fn payload(&self) -> &Bytes {
        &self.inner.payload
    }

    /// The routing key the producer set, if any.
    pub fn key(&self) -> Option<&str> {
        self.inner.routing_key.as_deref()
    }

    /// The attributes the producer set.
    pub fn attributes(&self) -> &HashMap<String, String> {
        &self.inner.attributes
    }

    /// The topic (partition) the message was delivered from.
    pub fn topic(&self) -> &str {
        &self.msg_id.topic_name
    }

    /// Its offset in the topic: 0, 1, 2, … in publish order.
    pub fn offset(&self) -> u64 {
        self.msg_id.topic_offset
    }

    /// The name of the producer that sent it.
    pub fn producer_name(&self) -> &str {
        &self.inner.producer_name
    }

    /// When the producer sent it (milliseconds since the Unix epoch, the producer's clock).
    pub fn publish_time(&self) -> u64 {
        self.inner.publish_time
    }

    /// The message id as the broker sent it.
    pub fn id(&self) -> &MsgId {
        &self.msg_id
    }

    /// Acknowledges the message: the broker will not deliver it to this subscription again.
    ///
    /// Errors: [`BrokerError::NotSubscribed`] when its topic is not one of this consumer's;
    /// [`BrokerError::Closed`] after the consumer closed; the broker's refusal, or the last
    /// transient error once the retry policy gives up.
    pub async fn ack(&self) -> Result<(), BrokerError> {
        acks::ack(self.partition()?, &self.msg_id).await
    }

    /// Asks for redelivery after the broker's default delay.
    pub async fn nack(&self) -> Result<(), BrokerError> {
        self.partition()?.nack(&self.msg_id, None, None).await
    }

    /// Asks for redelivery after `delay`, recording `reason` (dead letters keep it).
    pub async fn nack_with(&self, delay: Duration, reason: &str) -> Result<(), BrokerError> {
        self.partition()?
            .nack(&self.msg_id, Some(delay), Some(reason))
            .await
    }

    fn partition(&self) -> Result<&Arc<PartitionConsumer>, BrokerError> {
        self.partitions
            .get(&self.msg_id.topic_name)
            .ok_or_else(|| BrokerError::NotSubscribed(self.msg_id.topic_name.clone()))
    }
}
