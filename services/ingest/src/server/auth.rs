//! API keys, upstream's way: 64 lowercase hex characters, stored as the SHA-256 of the key
//! string (hex), never the key. Check: format → digest → lookup → constant-time comparison;
//! one 401 for every failure. A key store that cannot answer is a 503: a store outage must not
//! look like a revoked key to clients, which would drop their events instead of retrying.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use courier_traits::error::{Classify, ErrorClass};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use super::reply::RequestError;

/// The SHA-256 of an API key string: what is stored and compared.
#[derive(Clone, Copy)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// The digest of `key` (its UTF-8 bytes, as upstream's `HashKey`).
    pub fn of_key(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    /// Reads the stored form: 64 lowercase hex characters.
    pub fn from_hex(hex: &str) -> Option<Self> {
        if !is_lower_hex_64(hex) {
            return None;
        }
        let mut bytes = [0_u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            *byte = (nibble(pair[0]) << 4) | nibble(pair[1]);
        }
        Some(Self(bytes))
    }

    /// The stored form: 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The first 8 bytes, which index a store; the full digest is compared in constant time.
    fn prefix(&self) -> [u8; 8] {
        let mut prefix = [0_u8; 8];
        prefix.copy_from_slice(&self.0[..8]);
        prefix
    }
}

impl ConstantTimeEq for KeyDigest {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.0.ct_eq(&other.0)
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyDigest({})", self.to_hex())
    }
}

/// Whether `s` has the form of an API key: 64 lowercase hex digits.
pub(crate) fn is_lower_hex_64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn nibble(c: u8) -> u8 {
    if c.is_ascii_digit() {
        c - b'0'
    } else {
        c - b'a' + 10
    }
}

/// A stored key: never the key itself.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    /// The key's id (UUIDv7 for created keys; `keys_file:<app>/<name>` for the static file).
    pub id: String,
    /// The app the key sends for.
    pub app_id: String,
    /// A label (`Production iOS`).
    pub name: String,
    /// SHA-256 of the key string.
    pub digest: KeyDigest,
    /// Revoked keys are refused with the same 401 as unknown ones.
    pub revoked: bool,
}

/// The key store could not answer; the request is 503, never 401.
#[derive(Debug, Clone, thiserror::Error)]
#[error("API key store unavailable: {0}")]
pub struct KeyStoreError(pub String);

impl Classify for KeyStoreError {
    fn class(&self) -> ErrorClass {
        ErrorClass::TRANSIENT
    }
}

/// Where keys are looked up.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// The records that may have `digest`: at least every record that has it (a store may
    /// return more, e.g. all records sharing an index prefix; the checker compares digests).
    async fn lookup(&self, digest: &KeyDigest) -> Result<Vec<KeyRecord>, KeyStoreError>;
}

/// The app a request's key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedApp {
    /// The key's app.
    pub app_id: String,
    /// The key's id (for logs; never the key).
    pub key_id: String,
}

/// Checks `X-API-Key` values against a [`KeyStore`].
#[derive(Clone)]
pub struct ApiKeyChecker {
    store: Arc<dyn KeyStore>,
    retry_after: Duration,
}

impl fmt::Debug for ApiKeyChecker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyChecker")
            .field("retry_after", &self.retry_after)
            .finish_non_exhaustive()
    }
}

impl ApiKeyChecker {
    /// A checker over `store`; a store failure answers 503 with `Retry-After: 1`.
    pub fn new(store: Arc<dyn KeyStore>) -> Self {
        Self {
            store,
            retry_after: Duration::from_secs(1),
        }
    }

    /// The app of `key` (the `X-API-Key` header's value, `None` if absent).
    pub async fn check(&self, key: Option<&[u8]>) -> Result<AuthenticatedApp, RequestError> {
        let key = match key {
            None | Some([]) => return Err(RequestError::MissingApiKey),
            Some(bytes) => std::str::from_utf8(bytes).map_err(|_| RequestError::InvalidApiKey)?,
        };
        if !is_lower_hex_64(key) {
            return Err(RequestError::InvalidApiKey);
        }
        let digest = KeyDigest::of_key(key);
        let candidates =
            self.store
                .lookup(&digest)
                .await
                .map_err(|e| RequestError::Unavailable {
                    message: e.to_string(),
                    retry_after: self.retry_after,
                })?;
        // Every candidate is compared, in constant time, whichever matches.
        let mut found: Option<&KeyRecord> = None;
        for record in &candidates {
            if bool::from(record.digest.ct_eq(&digest)) {
                found = Some(record);
            }
        }
        match found {
            Some(record) if !record.revoked => Ok(AuthenticatedApp {
                app_id: record.app_id.clone(),
                key_id: record.id.clone(),
            }),
            _ => Err(RequestError::InvalidApiKey),
        }
    }
}

/// Keys held in memory, indexed by digest prefix: the static keys file, tests.
#[derive(Debug, Default)]
pub struct MemoryKeyStore {
    by_prefix: RwLock<HashMap<[u8; 8], Vec<KeyRecord>>>,
}

/// A keys file that cannot be used; the entry is named.
#[derive(Debug, thiserror::Error)]
pub enum KeysFileError {
    /// The file could not be read.
    #[error("cannot read keys file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not a JSON array of `{"app_id","name","sha256"}`.
    #[error("keys file is not a JSON array of {{app_id, name, sha256}}: {0}")]
    Format(String),
    /// One entry breaks a rule.
    #[error("keys file entry {index}: {reason}")]
    Entry {
        /// Position in the array.
        index: usize,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    app_id: String,
    name: String,
    sha256: String,
}

/// App ids of the spec: `[A-Za-z0-9._~:@+=-]{1,128}`, except `.` and `..`, which cannot
/// name a stream segment (`ingest/<app_id>`).
pub(crate) fn is_valid_app_id(app_id: &str) -> bool {
    (1..=128).contains(&app_id.len())
        && app_id != "."
        && app_id != ".."
        && app_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~:@+=-".contains(&b))
}

impl MemoryKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces, by id) a record.
    pub fn insert(&self, record: KeyRecord) {
        let mut map = self.by_prefix.write().unwrap_or_else(|e| e.into_inner());
        let bucket = map.entry(record.digest.prefix()).or_default();
        bucket.retain(|r| r.id != record.id);
        bucket.push(record);
    }

    /// Marks the key `id` revoked; false if there is none.
    pub fn revoke(&self, id: &str) -> bool {
        let mut map = self.by_prefix.write().unwrap_or_else(|e| e.into_inner());
        let mut found = false;
        for record in map.values_mut().flatten().filter(|r| r.id == id) {
            record.revoked = true;
            found = true;
        }
        found
    }

    /// Reads a static keys file: a JSON array of `{"app_id","name","sha256"}` with the
    /// digest in upstream's stored form (so upstream's key table exports as is).
    pub fn from_keys_file(path: &Path) -> Result<Self, KeysFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeysFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_keys_json(&text)
    }

    /// [`MemoryKeyStore::from_keys_file`] of the file's text.
    pub fn from_keys_json(text: &str) -> Result<Self, KeysFileError> {
        let entries: Vec<FileEntry> =
            serde_json::from_str(text).map_err(|e| KeysFileError::Format(e.to_string()))?;
        let store = Self::new();
        let mut ids = std::collections::HashSet::new();
        for (index, entry) in entries.into_iter().enumerate() {
            let bad = |reason: &str| KeysFileError::Entry {
                index,
                reason: reason.to_owned(),
            };
            if !is_valid_app_id(&entry.app_id) {
                return Err(bad(
                    "app_id must match [A-Za-z0-9._~:@+=-]{1,128} and not be . or ..",
                ));
            }
            if entry.name.is_empty() {
                return Err(bad("name is empty"));
            }
            let digest = KeyDigest::from_hex(&entry.sha256)
                .ok_or_else(|| bad("sha256 must be 64 lowercase hex characters"))?;
            let id = format!("keys_file:{}/{}", entry.app_id, entry.name);
            if !ids.insert(id.clone()) {
                return Err(bad("two entries with this app_id and name"));
            }
            store.insert(KeyRecord {
                id,
                app_id: entry.app_id,
                name: entry.name,
                digest,
                revoked: false,
            });
        }
        Ok(store)
    }
}

#[async_trait]
impl KeyStore for MemoryKeyStore {
    async fn lookup(&self, digest: &KeyDigest) -> Result<Vec<KeyRecord>, KeyStoreError> {
        let map = self.by_prefix.read().unwrap_or_else(|e| e.into_inner());
        Ok(map.get(&digest.prefix()).cloned().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn record(id: &str, app: &str, key: &str) -> KeyRecord {
        KeyRecord {
            id: id.into(),
            app_id: app.into(),
            name: "test".into(),
            digest: KeyDigest::of_key(key),
            revoked: false,
        }
    }

    #[test]
    fn digest_is_upstreams_sha256_hex_of_the_key_string() {
        // sha256 of the 64 characters above, as `echo -n KEY | sha256sum` prints it.
        let digest = KeyDigest::of_key(KEY);
        assert_eq!(
            digest.to_hex(),
            "a8ae6e6ee929abea3afcfc5258c8ccd6f85273e0d4626d26c7279f3250f77c8e"
        );
        let back = KeyDigest::from_hex(&digest.to_hex()).expect("hex");
        assert!(bool::from(back.ct_eq(&digest)));
        assert!(KeyDigest::from_hex(&digest.to_hex().to_uppercase()).is_none());
        assert!(KeyDigest::from_hex("abc").is_none());
    }

    #[tokio::test]
    async fn one_401_for_every_failure_and_the_app_on_success() {
        let store = Arc::new(MemoryKeyStore::new());
        store.insert(record("k1", "app-1", KEY));
        let other = KEY.replace('0', "1");
        store.insert(record("k2", "app-2", &other));
        let checker = ApiKeyChecker::new(store.clone());
        assert_eq!(
            checker.check(Some(KEY.as_bytes())).await,
            Ok(AuthenticatedApp {
                app_id: "app-1".into(),
                key_id: "k1".into()
            })
        );
        assert_eq!(
            checker
                .check(Some(other.as_bytes()))
                .await
                .expect("ok")
                .app_id,
            "app-2"
        );
        assert_eq!(checker.check(None).await, Err(RequestError::MissingApiKey));
        assert_eq!(
            checker.check(Some(b"")).await,
            Err(RequestError::MissingApiKey)
        );
        let unknown = KEY.replace('1', "2");
        for bad in [
            KEY.to_uppercase(),
            KEY[..63].to_owned(),
            format!("{KEY}0"),
            format!(" {}", &KEY[1..]),
            unknown,
        ] {
            assert_eq!(
                checker.check(Some(bad.as_bytes())).await,
                Err(RequestError::InvalidApiKey),
                "{bad}"
            );
        }
        assert_eq!(
            checker.check(Some(&[0xff; 64])).await,
            Err(RequestError::InvalidApiKey)
        );
        assert!(store.revoke("k1"));
        assert!(!store.revoke("nope"));
        assert_eq!(
            checker.check(Some(KEY.as_bytes())).await,
            Err(RequestError::InvalidApiKey)
        );
    }

    /// A store returning a record whose prefix matches but whose digest does not: the full
    /// comparison refuses it.
    #[tokio::test]
    async fn the_full_digest_is_compared_not_the_index() {
        struct Careless(KeyRecord);
        #[async_trait]
        impl KeyStore for Careless {
            async fn lookup(&self, _: &KeyDigest) -> Result<Vec<KeyRecord>, KeyStoreError> {
                Ok(vec![self.0.clone()])
            }
        }
        let checker = ApiKeyChecker::new(Arc::new(Careless(record("k", "app-1", KEY))));
        let other = KEY.replace('a', "b");
        assert_eq!(
            checker.check(Some(other.as_bytes())).await,
            Err(RequestError::InvalidApiKey)
        );
        assert!(checker.check(Some(KEY.as_bytes())).await.is_ok());
    }

    #[tokio::test]
    async fn a_failing_store_is_503_never_401() {
        struct Down;
        #[async_trait]
        impl KeyStore for Down {
            async fn lookup(&self, _: &KeyDigest) -> Result<Vec<KeyRecord>, KeyStoreError> {
                Err(KeyStoreError("connection refused".into()))
            }
        }
        let checker = ApiKeyChecker::new(Arc::new(Down));
        let error = checker.check(Some(KEY.as_bytes())).await.expect_err("503");
        assert_eq!(error.status(), 503);
        assert_eq!(error.retry_after_secs(), Some(1));
        // Format errors are still 401 without asking the store.
        assert_eq!(
            checker.check(Some(b"nope")).await,
            Err(RequestError::InvalidApiKey)
        );
    }

    #[tokio::test]
    async fn keys_file_loads_upstream_digests_and_names_bad_entries() {
        let digest = KeyDigest::of_key(KEY).to_hex();
        let text = format!(r#"[{{"app_id":"app-1","name":"ios","sha256":"{digest}"}}]"#);
        let store = MemoryKeyStore::from_keys_json(&text).expect("loads");
        let checker = ApiKeyChecker::new(Arc::new(store));
        let app = checker.check(Some(KEY.as_bytes())).await.expect("known");
        assert_eq!(app.app_id, "app-1");
        assert_eq!(app.key_id, "keys_file:app-1/ios");
        assert!(!text.contains(KEY), "the file holds no key");

        let upper = text.replace(&digest, &digest.to_uppercase());
        for (bad, index) in [
            (upper, 0),
            (text.replace("app-1", "app 1"), 0),
            (text.replace("app-1", ".."), 0),
            (text.replace("\"ios\"", "\"\""), 0),
            (
                format!(
                    "[{},{}]",
                    &text[1..text.len() - 1],
                    &text[1..text.len() - 1]
                ),
                1,
            ),
        ] {
            match MemoryKeyStore::from_keys_json(&bad) {
                Err(KeysFileError::Entry { index: i, .. }) => assert_eq!(i, index, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(matches!(
            MemoryKeyStore::from_keys_json(r#"[{"app_id":"a","name":"n","sha256":"x","key":"k"}]"#),
            Err(KeysFileError::Format(_))
        ));
        assert!(matches!(
            MemoryKeyStore::from_keys_file(Path::new("/nonexistent/keys.json")),
            Err(KeysFileError::Read { .. })
        ));
    }
}
