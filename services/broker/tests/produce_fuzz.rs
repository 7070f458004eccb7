//! B2: whatever a request holds, ProducerService answers (a status or a response), never
//! panics, and an accepted message is stored with the broker's own `msg_id`.

use std::sync::Arc;

use courier_broker::catalog::Catalog;
use courier_broker::lifecycle::Lifecycle;
use courier_broker::producer::{ProduceService, ProducerConfig, ProducerRegistry};
use courier_impls::grpc::proto::danube::{MsgId, ProducerRequest, StreamMessage};
use courier_impls::memory::MemoryStreamStorage;
use courier_traits::storage::StreamStorage;
use proptest::prelude::*;
use prost::Message;

fn service(runtime: &tokio::runtime::Runtime) -> ProduceService {
    runtime.block_on(async {
        let storage: Arc<dyn StreamStorage> = Arc::new(MemoryStreamStorage::new());
        let catalog = Arc::new(Catalog::open(storage).await.expect("catalog"));
        ProduceService::new(
            catalog,
            Arc::new(ProducerRegistry::new(8)),
            Arc::new(Lifecycle::new()),
            "http://127.0.0.1:6650".into(),
            ProducerConfig {
                max_message_bytes: 4_096,
                ..ProducerConfig::default()
            },
        )
    })
}

/// Names that are sometimes valid, often not.
fn topic_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/default/fuzz".to_owned()),
        Just("/default/fuzz-part-0".to_owned()),
        "/[a-c]{1,3}/[a-c\\-]{1,5}",
        ".{0,40}",
    ]
}

fn create_request() -> impl Strategy<Value = ProducerRequest> {
    (
        any::<u64>(),
        prop_oneof![Just("p".to_owned()), ".{0,20}"],
        topic_name(),
        -2i32..4,
        -2i32..4,
    )
        .prop_map(
            |(request_id, name, topic, mode, dispatch)| ProducerRequest {
                request_id,
                producer_name: name,
                topic_name: topic,
                schema_ref: None,
                producer_access_mode: mode,
                dispatch_strategy: dispatch,
            },
        )
}

fn send_request() -> impl Strategy<Value = StreamMessage> {
    (
        any::<u64>(),
        proptest::option::of((any::<u64>(), topic_name(), ".{0,10}", any::<u64>())),
        proptest::collection::vec(any::<u8>(), 0..6_000),
        prop_oneof![Just("p".to_owned()), ".{0,20}"],
    )
        .prop_map(|(request_id, id, payload, name)| StreamMessage {
            request_id,
            msg_id: id.map(
                |(producer_id, topic_name, broker_addr, topic_offset)| MsgId {
                    producer_id,
                    topic_name,
                    broker_addr,
                    topic_offset,
                },
            ),
            payload: payload.into(),
            producer_name: name,
            ..StreamMessage::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn any_create_then_send_answers_without_panicking(
        create in create_request(),
        send in send_request(),
        raw in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let service = service(&runtime);
        runtime.block_on(async {
            let created = service.create(create.clone()).await;
            if let Ok(response) = &created {
                prop_assert_eq!(response.request_id, create.request_id);
            }
            // A send from the producer just created, and the random one.
            if let Ok(response) = created {
                let mut own = send.clone();
                own.msg_id = Some(MsgId {
                    producer_id: response.producer_id,
                    topic_name: create.topic_name.clone(),
                    ..MsgId::default()
                });
                if let Ok(answer) = service.send(own.clone()).await {
                    prop_assert_eq!(answer.request_id, own.request_id);
                }
            }
            let _ = service.send(send).await;
            // Raw bytes, when they happen to decode, are requests like any other.
            if let Ok(request) = ProducerRequest::decode(raw.as_slice()) {
                let _ = service.create(request).await;
            }
            if let Ok(message) = StreamMessage::decode(raw.as_slice()) {
                let _ = service.send(message).await;
            }
            Ok(())
        })?;
    }
}
