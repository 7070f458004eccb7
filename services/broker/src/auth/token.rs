//! HS256 JSON Web Tokens, signed and checked with `hmac` + `sha2` (no other JWT feature is
//! needed: one algorithm, one key, the claims below).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::keys::{Principal, Role};

/// The header every token carries; others are refused (no `none`, no algorithm switch).
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// The token's claims.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: the principal's name.
    pub sub: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// The principal's name.
    pub principal_name: String,
    /// The principal's kind.
    pub principal_type: String,
    /// Its roles.
    pub roles: Vec<Role>,
}

impl Claims {
    /// The principal the token speaks for.
    pub fn principal(&self) -> Principal {
        Principal {
            name: self.principal_name.clone(),
            kind: self.principal_type.clone(),
            roles: self.roles.clone(),
        }
    }
}

/// Why a token was refused. The messages name no part of the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// Not three base64url parts, or a header other than HS256.
    #[error("malformed token")]
    Malformed,
    /// The signature does not match.
    #[error("bad token signature")]
    BadSignature,
    /// Signed by us but for another issuer.
    #[error("token from another issuer")]
    WrongIssuer,
    /// Past its `exp`.
    #[error("token expired")]
    Expired,
}

/// Signs and checks tokens with one shared secret (every node of a cluster needs the same).
#[derive(Clone)]
pub struct TokenSigner {
    secret: Vec<u8>,
    issuer: String,
    ttl: Duration,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("secret", &"<redacted>")
            .field("issuer", &self.issuer)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl TokenSigner {
    /// A signer with `secret`, naming `issuer`, issuing tokens valid for `ttl`.
    pub fn new(secret: Vec<u8>, issuer: impl Into<String>, ttl: Duration) -> TokenSigner {
        TokenSigner {
            secret,
            issuer: issuer.into(),
            ttl,
        }
    }

    /// How long issued tokens are valid.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length; the error is unreachable for it.
        match <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts every key length"),
        }
    }

    /// A token for `principal` issued at `now_unix` (seconds).
    pub fn issue(&self, principal: &Principal, now_unix: u64) -> String {
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: principal.name.clone(),
            exp: now_unix.saturating_add(self.ttl.as_secs()),
            iat: now_unix,
            principal_name: principal.name.clone(),
            principal_type: principal.kind.clone(),
            roles: principal.roles.clone(),
        };
        // Serializing a struct of strings and numbers cannot fail.
        let payload = serde_json::to_vec(&claims).unwrap_or_default();
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(HEADER),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }

    /// The claims of `token` if it is ours, untampered and not expired at `now_unix`. The
    /// signature is checked (in constant time) before anything in the token is believed.
    ///
    /// Errors: [`TokenError`].
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac();
        mac.update(header.as_bytes());
        mac.update(b".");
        mac.update(payload.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| TokenError::BadSignature)?;
        let header: serde_json::Value = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(TokenError::Malformed)?;
        if header.get("alg").and_then(|alg| alg.as_str()) != Some("HS256") {
            return Err(TokenError::Malformed);
        }
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(TokenError::Malformed)?;
        if claims.iss != self.issuer {
            return Err(TokenError::WrongIssuer);
        }
        if claims.exp <= now_unix {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// 32 random bytes: a signing secret for a single node whose tokens need not outlive it.
pub fn random_secret() -> Vec<u8> {
    rand::random::<[u8; 32]>().to_vec()
}

/// Whether `bearer` has a JWT's shape (three dot-separated parts), as opposed to an API key
/// sent as the bearer.
pub fn looks_like_jwt(bearer: &str) -> bool {
    bearer.split('.').count() == 3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> TokenSigner {
        TokenSigner::new(
            b"test-secret".to_vec(),
            "courier",
            Duration::from_secs(3600),
        )
    }

    fn principal() -> Principal {
        Principal {
            name: "orders-app".to_owned(),
            kind: "service".to_owned(),
            roles: vec![Role::Produce, Role::Consume],
        }
    }

    #[test]
    fn an_issued_token_verifies_with_its_claims_until_it_expires() {
        let token = signer().issue(&principal(), 1_000);
        assert!(looks_like_jwt(&token));
        let claims = signer().verify(&token, 1_000).expect("valid");
        assert_eq!(claims.sub, "orders-app");
        assert_eq!((claims.iat, claims.exp), (1_000, 4_600));
        assert_eq!(claims.principal(), principal());
        assert!(signer().verify(&token, 4_599).is_ok());
        assert_eq!(signer().verify(&token, 4_600), Err(TokenError::Expired));
    }

    #[test]
    fn the_claims_are_the_specs_and_the_header_is_hs256() {
        let token = signer().issue(&principal(), 7);
        let parts: Vec<&str> = token.split('.').collect();
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
        assert_eq!(header["alg"], "HS256");
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
        for key in [
            "iss",
            "sub",
            "exp",
            "iat",
            "principal_name",
            "principal_type",
            "roles",
        ] {
            assert!(claims.get(key).is_some(), "{key} missing: {claims}");
        }
        assert_eq!(claims["roles"], serde_json::json!(["produce", "consume"]));
    }

    #[test]
    fn tampered_foreign_and_malformed_tokens_are_refused() {
        let token = signer().issue(&principal(), 1_000);
        let other = TokenSigner::new(b"other".to_vec(), "courier", Duration::from_secs(3600));
        assert_eq!(other.verify(&token, 1_000), Err(TokenError::BadSignature));
        // Claims swapped for an admin's under the original signature.
        let admin = Principal {
            roles: vec![Role::Admin],
            ..principal()
        };
        let forged = signer().issue(&admin, 1_000);
        let parts: Vec<&str> = token.split('.').collect();
        let forged_parts: Vec<&str> = forged.split('.').collect();
        let spliced = format!("{}.{}.{}", parts[0], forged_parts[1], parts[2]);
        assert_eq!(
            signer().verify(&spliced, 1_000),
            Err(TokenError::BadSignature)
        );
        let elsewhere = TokenSigner::new(
            b"test-secret".to_vec(),
            "elsewhere",
            Duration::from_secs(60),
        );
        let foreign = elsewhere.issue(&principal(), 1_000);
        assert_eq!(
            signer().verify(&foreign, 1_000),
            Err(TokenError::WrongIssuer)
        );
        for bad in ["", "a.b", "a.b.c.d", "...", "a.b.!!", &format!("{token}x")] {
            assert!(signer().verify(bad, 1_000).is_err(), "{bad:?}");
        }
        // alg "none" with an empty signature.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            parts[1]
        );
        assert!(signer().verify(&none, 1_000).is_err());
    }
}
