//! What a topic's log holds, read straight from the storage.

use courier_broker::catalog::{decode_record, topic_log_stream};
use courier_broker::topic::TopicName;
use courier_impls::grpc::proto::danube::StreamMessage;
use courier_traits::storage::{ReadLimits, StreamStorage};

/// Every stored message of `topic`'s log, in offset order.
pub async fn stored(storage: &dyn StreamStorage, topic: &str) -> Vec<StreamMessage> {
    let stream = topic_log_stream(&TopicName::new(topic).expect("valid"));
    let batch = storage
        .read(&stream, None, ReadLimits::default())
        .await
        .expect("read");
    batch
        .records
        .iter()
        .map(|r| decode_record(&r.data).expect("decodes"))
        .collect()
}
