//! API keys kept in the storage, and the admin API that manages them.
//!
//! - [`KeyLog`]: the append-only log of key records in the stream [`KEY_LOG_STREAM`]
//!   (`ingest-admin/keys`) of any storage: `created {id, app_id, name, sha256, created_at}` and
//!   `revoked {id, revoked_at}`, never a key. Folded in memory; every node reads the same log.
//! - [`StorageKeyStore`]: the [`KeyStore`](super::KeyStore) over it, following the stream with
//!   `wait`, so a revocation made through any node holds on every node within 5 s; when the
//!   log cannot be read, lookups fail and requests get 503, never 401.
//! - [`AdminApi`]: `POST/GET /api/admin/keys`, `DELETE /api/admin/keys/{id}` and the
//!   read-only event streams, behind the admin token.
//! - [`CombinedKeyStore`]: the log and a static keys file asked as one.

mod admin;
mod combined;
mod entry;
mod json;
mod log;
mod reads;
mod store;
mod table;

pub use admin::{AdminApi, created_key_json, key_json, key_list_json, revoked_key_json};
pub use combined::CombinedKeyStore;
pub use log::{CreatedKey, KEY_LOG_STREAM, KeyLog, KeyLogError, MAX_KEY_NAME_BYTES};
pub use store::{StorageKeyStore, TailConfig};
pub use table::KeyInfo;
