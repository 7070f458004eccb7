//! [`CombinedKeyStore`]: several key stores asked as one (the key log and a static keys file).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::server::auth::{KeyDigest, KeyRecord, KeyStore, KeyStoreError};

/// Asks every store and answers all their candidates; any store failing fails the lookup
/// (503), since the missing answer might have been a revocation.
pub struct CombinedKeyStore {
    stores: Vec<Arc<dyn KeyStore>>,
}

impl fmt::Debug for CombinedKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CombinedKeyStore")
            .field("stores", &self.stores.len())
            .finish()
    }
}

impl CombinedKeyStore {
    /// The stores, asked in this order.
    pub fn new(stores: Vec<Arc<dyn KeyStore>>) -> Self {
        Self { stores }
    }
}

#[async_trait]
impl KeyStore for CombinedKeyStore {
    async fn lookup(&self, digest: &KeyDigest) -> Result<Vec<KeyRecord>, KeyStoreError> {
        let mut candidates = Vec::new();
        for store in &self.stores {
            candidates.extend(store.lookup(digest).await?);
        }
        Ok(candidates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{ApiKeyChecker, MemoryKeyStore, RequestError};

    const KEY_A: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const KEY_B: &str = "1123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn store_with(id: &str, key: &str) -> Arc<MemoryKeyStore> {
        let store = MemoryKeyStore::new();
        store.insert(KeyRecord {
            id: id.into(),
            app_id: format!("app-{id}"),
            name: "n".into(),
            digest: KeyDigest::of_key(key),
            revoked: false,
        });
        Arc::new(store)
    }

    #[tokio::test]
    async fn keys_of_every_store_pass_and_a_failing_store_is_503() {
        let combined = CombinedKeyStore::new(vec![store_with("a", KEY_A), store_with("b", KEY_B)]);
        let checker = ApiKeyChecker::new(Arc::new(combined));
        for (key, app) in [(KEY_A, "app-a"), (KEY_B, "app-b")] {
            let found = checker.check(Some(key.as_bytes())).await.expect("known");
            assert_eq!(found.app_id, app);
        }

        struct Down;
        #[async_trait]
        impl KeyStore for Down {
            async fn lookup(&self, _: &KeyDigest) -> Result<Vec<KeyRecord>, KeyStoreError> {
                Err(KeyStoreError("down".into()))
            }
        }
        let combined = CombinedKeyStore::new(vec![store_with("a", KEY_A), Arc::new(Down)]);
        let checker = ApiKeyChecker::new(Arc::new(combined));
        assert!(matches!(
            checker.check(Some(KEY_A.as_bytes())).await,
            Err(RequestError::Unavailable { .. })
        ));
    }
}
