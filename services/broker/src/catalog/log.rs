//! A reliable topic's log in storage: its stream name, its records and the writer sequence
//! that keeps its offsets dense (spec §3).

use bytes::Bytes;
use courier_impls::grpc::proto::danube::StreamMessage;
use courier_traits::error::InvalidInput;
use courier_traits::storage::{StreamConfig, StreamName};
use prost::Message;

use crate::topic::TopicName;

/// The content type of topic logs and the catalog's stream: what `create` is called with, so
/// creating an existing log again is idempotent.
pub const LOG_CONTENT_TYPE: &str = "application/x-protobuf";

/// The stream holding the reliable messages of `topic`: `broker/t/<ns>/<topic>`.
pub fn topic_log_stream(topic: &TopicName) -> StreamName {
    // A topic name is `/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+`, which always makes a valid stream name.
    StreamName::new(&format!("broker/t{topic}"))
        .unwrap_or_else(|_| unreachable!("topic names are valid stream name segments"))
}

/// How topic logs are created.
pub fn topic_log_config() -> StreamConfig {
    StreamConfig::with_content_type(LOG_CONTENT_TYPE)
}

/// The writer sequence of an append whose first record gets dense offset `first`: zero-padded
/// so that bytewise order is numeric order (the storage requires it to rise).
pub fn writer_seq(first: u64) -> String {
    format!("{first:020}")
}

/// One log record: the message as stored, `msg_id.topic_offset` already its dense offset.
pub fn encode_record(message: &StreamMessage) -> Bytes {
    Bytes::from(message.encode_to_vec())
}

/// Decodes a log record.
///
/// Errors: [`InvalidInput`] on field `topic log record` if the bytes are not a
/// `StreamMessage` (a foreign or corrupted record).
pub fn decode_record(record: &Bytes) -> Result<StreamMessage, InvalidInput> {
    StreamMessage::decode(record.clone()).map_err(|error| {
        InvalidInput::new(
            "topic log record",
            &format!("{} bytes", record.len()),
            error.to_string(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_impls::grpc::proto::danube::MsgId;

    #[test]
    fn log_names_and_writer_seqs() {
        let topic = TopicName::new("/default/orders-part-2").expect("valid");
        assert_eq!(
            topic_log_stream(&topic).as_str(),
            "broker/t/default/orders-part-2"
        );
        assert!(writer_seq(9) < writer_seq(10), "bytewise is numeric");
        assert_eq!(writer_seq(u64::MAX).len(), 20);
    }

    #[test]
    fn records_round_trip_and_garbage_is_refused() {
        let message = StreamMessage {
            msg_id: Some(MsgId {
                producer_id: 7,
                topic_name: "/default/orders".into(),
                broker_addr: "http://b:6650".into(),
                topic_offset: 41,
            }),
            payload: Bytes::from_static(b"hello"),
            ..StreamMessage::default()
        };
        let decoded = decode_record(&encode_record(&message)).expect("round trip");
        assert_eq!(decoded, message);
        let error = decode_record(&Bytes::from_static(&[0xff, 0xff, 0xff])).expect_err("junk");
        assert_eq!(error.field, "topic log record");
    }
}
