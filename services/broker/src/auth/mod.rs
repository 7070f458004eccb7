//! Authentication and authorization (`auth.mode: jwt`; spec §5).
//!
//! - [`keys`]: API keys stored as their SHA-256 with a principal and roles (`produce`,
//!   `consume`, `admin`), read by the binary from a keys file. A file rather than a stream of
//!   the storage: keys are configuration (made by `courier broker hash-key`, handed to every
//!   node with the rest of its config), the broker has no RPC that adds keys, and a file keeps
//!   them out of the storage that every client-facing node can write.
//! - [`token`]: HS256 tokens (`iss`, `sub`, `exp`, `iat`, `principal_name`, `principal_type`,
//!   `roles`), 1 h by default, signed with a secret every node of a cluster shares.
//! - [`service`]: `danube.AuthService/Authenticate(api_key)` → token; a bad key is
//!   `Unauthenticated`.
//! - [`guard`] and [`layer`]: one tower layer before the router checks `authorization: Bearer`
//!   on every other RPC: missing, malformed, unknown or expired → `Unauthenticated`, a valid
//!   credential without the RPC's role → `PermissionDenied`. The API key itself is accepted
//!   as the bearer when [`AuthConfig::accept_api_key_as_bearer`] (the published
//!   `danube-client`'s `with_api_key` sends it so). Valid credentials are cached ≤ 30 s under
//!   their digest; comparisons are constant-time; no key, token or secret is logged.
//!
//! Auth over plaintext is refused when the node opens unless
//! [`AuthConfig::allow_plaintext`]: a bearer sent in the clear is as good as published.

mod config;
pub mod guard;
pub mod keys;
pub mod layer;
pub mod service;
pub mod token;

pub use config::{AuthConfig, DEFAULT_ISSUER, DEFAULT_TOKEN_TTL};
pub use guard::Guard;
pub use keys::{ApiKeys, KeyEntry, Principal, Role, key_digest};
pub use layer::AuthLayer;
pub use service::Authenticator;
pub use token::{Claims, TokenError, TokenSigner, random_secret};
