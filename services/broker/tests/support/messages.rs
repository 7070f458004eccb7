//! Requests built the same way by several suites.

use courier_impls::grpc::proto::danube::{
    DispatchStrategy, MsgId, ProducerAccessMode, ProducerRequest, StreamMessage,
};

/// A `CreateProducer` request for a Shared, reliable producer named `name` on `topic`.
pub fn reliable_producer(topic: &str, name: &str, request_id: u64) -> ProducerRequest {
    ProducerRequest {
        request_id,
        producer_name: name.into(),
        topic_name: topic.into(),
        schema_ref: None,
        producer_access_mode: ProducerAccessMode::Shared.into(),
        dispatch_strategy: DispatchStrategy::Reliable.into(),
    }
}

/// A `SendMessage` request from producer `producer_id` (named `producer_name`) on `topic`.
pub fn stream_message(
    topic: &str,
    producer_id: u64,
    producer_name: &str,
    request_id: u64,
    payload: &str,
) -> StreamMessage {
    StreamMessage {
        request_id,
        msg_id: Some(MsgId {
            producer_id,
            topic_name: topic.into(),
            broker_addr: String::new(),
            topic_offset: 0,
        }),
        payload: payload.as_bytes().to_vec().into(),
        producer_name: producer_name.into(),
        ..StreamMessage::default()
    }
}
