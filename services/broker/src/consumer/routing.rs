//! Where a message goes among KeyShared consumers: the key it is placed by.

use courier_impls::grpc::proto::danube::StreamMessage;

/// The routing key KeyShared places a message by: its `routing_key`, else its producer's
/// name.
pub(crate) fn routing_key(message: &StreamMessage) -> &str {
    message
        .routing_key
        .as_deref()
        .unwrap_or(&message.producer_name)
}
