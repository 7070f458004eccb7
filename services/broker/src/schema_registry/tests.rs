//! Registry operations on one storage: ids, versions, dedup, modes, deletion, errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use courier_impls::memory::MemoryStreamStorage;
use courier_traits::storage::{
    AppendOutcome, AppendRequest, ForwardingStorage, ReadLimits, StorageError, StreamName,
    StreamStorage,
};

use super::events::{RegistryEvent, SCHEMAS_STREAM as STREAM};
use super::store::{Registration, SchemaRegistry};
use super::types::CompatibilityMode;
use crate::catalog::log::writer_seq;

fn registration(subject: &str) -> Registration {
    Registration {
        subject: subject.to_owned(),
        schema_type: "json_schema".to_owned(),
        definition: Bytes::from_static(br#"{"type":"object"}"#),
        description: String::new(),
        created_by: String::new(),
        tags: Vec::new(),
    }
}

async fn records(storage: &dyn StreamStorage) -> usize {
    let name = StreamName::new(STREAM).expect("valid");
    storage
        .read(&name, None, ReadLimits::default())
        .await
        .expect("read")
        .records
        .len()
}

/// A memory storage where, right after the first armed append to the registry's stream,
/// another admin's mode change lands (what a second node racing this one does).
struct AnotherAdminRightAfter {
    inner: MemoryStreamStorage,
    armed: AtomicBool,
    subject: String,
}

#[async_trait]
impl ForwardingStorage for AnotherAdminRightAfter {
    fn inner(&self) -> &dyn StreamStorage {
        &self.inner
    }
    async fn append(
        &self,
        name: &StreamName,
        request: AppendRequest,
    ) -> Result<AppendOutcome, StorageError> {
        let outcome = self.inner.append(name, request).await?;
        if self.armed.swap(false, Ordering::SeqCst) {
            let index = records(&self.inner).await as u64;
            let theirs = RegistryEvent::ModeSet {
                subject: self.subject.clone(),
                mode: CompatibilityMode::Full,
            };
            self.inner
                .append(
                    name,
                    AppendRequest::record(theirs.encode()).with_writer_seq(writer_seq(index)),
                )
                .await?;
        }
        Ok(outcome)
    }
}

#[tokio::test]
async fn a_mode_change_overtaken_by_another_admin_is_not_appended_again() {
    let storage = Arc::new(AnotherAdminRightAfter {
        inner: MemoryStreamStorage::new(),
        armed: AtomicBool::new(false),
        subject: "orders".to_owned(),
    });
    let registry = SchemaRegistry::open(storage.clone()).await.expect("open");
    registry
        .register(registration("orders"))
        .await
        .expect("register");
    storage.armed.store(true, Ordering::SeqCst);
    registry
        .set_mode("orders", "forward")
        .await
        .expect("set mode");
    // The registration, this call's change, the other admin's: the last writer wins and
    // nobody appends again (before the fix this call re-appended its mode over theirs).
    assert_eq!(records(&storage.inner).await, 3);
    registry.refresh().await.expect("refresh");
    let mode = registry.read().subject("orders").expect("subject").mode;
    assert_eq!(mode, CompatibilityMode::Full);
}

#[tokio::test]
async fn a_bad_record_is_not_folded_past_and_the_good_ones_are_folded_once() {
    let storage = Arc::new(MemoryStreamStorage::new());
    let registry = SchemaRegistry::open(storage.clone()).await.expect("open");
    registry
        .register(registration("orders"))
        .await
        .expect("register");
    let name = StreamName::new(STREAM).expect("valid");
    let another = RegistryEvent::ModeSet {
        subject: "orders".to_owned(),
        mode: CompatibilityMode::None,
    };
    storage
        .append(&name, AppendRequest::record(another.encode()))
        .await
        .expect("append");
    storage
        .append(
            &name,
            AppendRequest::record(Bytes::from_static(b"not json")),
        )
        .await
        .expect("append");
    assert!(
        registry.refresh().await.is_err(),
        "the bad record is reported"
    );
    assert!(registry.refresh().await.is_err(), "and again, not skipped");
    // Two good events folded, once each: the writer sequence stays the log's.
    assert_eq!(registry.read().events, 2);
    let mode = registry.read().subject("orders").expect("subject").mode;
    assert_eq!(mode, CompatibilityMode::None);
}
