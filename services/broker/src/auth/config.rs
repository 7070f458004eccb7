//! [`AuthConfig`]: the settings of `auth.mode: jwt`.

use std::time::Duration;

use super::keys::ApiKeys;
use super::token::TokenSigner;

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
