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

pub mod guard;
pub mod keys;
pub mod layer;
pub mod service;
pub mod token;

use std::time::Duration;

pub use guard::Guard;
pub use keys::{ApiKeys, KeyEntry, Principal, Role, key_digest};
pub use layer::AuthLayer;
pub use service::Authenticator;
pub use token::{Claims, TokenError, TokenSigner, random_secret};

/// How long issued tokens are valid unless configured otherwise.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// The `iss` of issued tokens unless configured otherwise.
pub const DEFAULT_ISSUER: &str = "courier-broker";

/// `auth.mode: jwt`: the keys accepted and how tokens are signed.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// The API keys `Authenticate` exchanges (and, when allowed, accepted as bearers).
    pub keys: ApiKeys,
    /// Signs and checks tokens.
    pub signer: TokenSigner,
    /// Accept an API key as the bearer credential [default: true].
    pub accept_api_key_as_bearer: bool,
    /// Serve auth without TLS (loopback tests) [default: false].
    pub allow_plaintext: bool,
}

impl AuthConfig {
    /// The defaults for `keys` and a signing `secret`: issuer [`DEFAULT_ISSUER`], tokens valid
    /// [`DEFAULT_TOKEN_TTL`], API keys accepted as bearers, plaintext refused.
    pub fn new(keys: ApiKeys, secret: Vec<u8>) -> AuthConfig {
        AuthConfig {
            keys,
            signer: TokenSigner::new(secret, DEFAULT_ISSUER, DEFAULT_TOKEN_TTL),
            accept_api_key_as_bearer: true,
            allow_plaintext: false,
        }
    }
}
