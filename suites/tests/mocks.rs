//! Shows that code written against the traits can be unit-tested with the mockall mocks
//! (`mocks` feature) instead of a real backend.

use bytes::Bytes;
use courier::bus::{
    BusCapabilities, BusError, MessageBus, MessageId, MockMessageBus, Published, Topic,
};
use courier::storage::{MockStreamStorage, StorageError, StreamName, StreamStorage};

/// A piece of application code: announces a user sign-up on the bus, returning the message id.
async fn announce_signup(bus: &dyn MessageBus, user: &str) -> Result<MessageId, BusError> {
    let topic = Topic::new("users/signed-up")?;
    Ok(bus.publish(&topic, Bytes::from(user.to_owned())).await?.id)
}

/// Another: true if a stream exists, false if not, errors passed through.
async fn stream_exists(store: &dyn StreamStorage, name: &StreamName) -> Result<bool, StorageError> {
    match store.head(name).await {
        Ok(_) => Ok(true),
        Err(StorageError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

#[tokio::test]
async fn application_code_unit_tested_against_a_mock_bus() {
    let mut bus = MockMessageBus::new();
    bus.expect_publish()
        .withf(|topic, payload| topic.as_str() == "users/signed-up" && &payload[..] == b"ada")
        .times(1)
        .returning(|_, _| {
            Ok(Published {
                id: MessageId::parse("m-1").expect("valid id"),
                position: None,
            })
        });
    bus.expect_capabilities()
        .returning(|| BusCapabilities::NONE);
    let id = announce_signup(&bus, "ada").await.expect("mock accepts");
    assert_eq!(id.as_str(), "m-1");
    assert_eq!(bus.capabilities(), BusCapabilities::NONE);
}

#[tokio::test]
async fn error_paths_unit_tested_against_a_mock_storage() {
    let mut store = MockStreamStorage::new();
    store.expect_head().returning(|name| {
        Err(StorageError::NotFound {
            stream: name.clone(),
        })
    });
    let name = StreamName::new("missing").expect("valid");
    assert!(
        !stream_exists(&store, &name)
            .await
            .expect("not found maps to false")
    );

    let mut store = MockStreamStorage::new();
    store.expect_head().returning(|_| {
        Err(StorageError::Unavailable {
            message: "redis down".into(),
            source: None,
        })
    });
    let err = stream_exists(&store, &name)
        .await
        .expect_err("unavailable passes through");
    assert!(courier::Classify::is_retryable(&err));
}
