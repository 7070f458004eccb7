//! [`SigningKey`]: the Ed25519 key webhook deliveries are signed with, generated once and kept
//! in the reserved stream `__ds/keys` of the storage, so every node signs with the same key,
//! publishes the same JWKS and keeps its `kid` across restarts.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use courier_traits::storage::{
    CreateOutcome, ReadLimits, StorageError, StreamConfig, StreamName, StreamStorage,
};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

/// The stream holding the key.
pub(crate) const KEY_STREAM: &str = "__ds/keys";

/// The webhook signing key.
pub(crate) struct SigningKey {
    pair: Ed25519KeyPair,
    kid: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish()
    }
}

impl SigningKey {
    /// The key kept in `storage`, generated and stored by the first node that asks. Two nodes
    /// starting together both propose a key; the storage's idempotent create keeps the first,
    /// and both read that one back.
    pub(crate) async fn load_or_create(
        storage: &dyn StreamStorage,
    ) -> Result<SigningKey, StorageError> {
        let name = StreamName::new(KEY_STREAM)?;
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| {
            StorageError::Backend {
                message: "cannot generate an Ed25519 key".into(),
                source: None,
            }
        })?;
        let record = json!({ "alg": "Ed25519", "pkcs8": URL_SAFE_NO_PAD.encode(pkcs8.as_ref()) });
        let outcome = storage
            .create(
                &name,
                StreamConfig::with_content_type("application/json"),
                vec![Bytes::from(record.to_string())],
            )
            .await?;
        let stored = match outcome {
            CreateOutcome::Created(_) => pkcs8.as_ref().to_vec(),
            CreateOutcome::AlreadyExists(_) => {
                let batch = storage.read(&name, None, ReadLimits::default()).await?;
                let first = batch.records.first().ok_or_else(|| broken("is empty"))?;
                let value: Value =
                    serde_json::from_slice(&first.data).map_err(|_| broken("is not JSON"))?;
                let text = value
                    .get("pkcs8")
                    .and_then(Value::as_str)
                    .ok_or_else(|| broken("has no pkcs8 field"))?;
                URL_SAFE_NO_PAD
                    .decode(text)
                    .map_err(|_| broken("holds a key that is not base64url"))?
            }
        };
        SigningKey::from_pkcs8(&stored)
    }

    fn from_pkcs8(pkcs8: &[u8]) -> Result<SigningKey, StorageError> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|_| broken("holds a key that is not an Ed25519 PKCS#8 document"))?;
        let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        // RFC 7638 thumbprint: the required members in lexicographic order, no whitespace.
        let thumbprint_input = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        let digest = ring::digest::digest(&ring::digest::SHA256, thumbprint_input.as_bytes());
        let kid = format!("ds_{}", URL_SAFE_NO_PAD.encode(digest.as_ref()));
        Ok(SigningKey { pair, kid })
    }

    /// The key id deliveries name.
    pub(crate) fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key set (`GET __ds/jwks.json`).
    pub(crate) fn jwks(&self) -> Value {
        json!({
            "keys": [{
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(self.pair.public_key().as_ref()),
                "kid": self.kid,
                "use": "sig",
                "alg": "EdDSA",
            }]
        })
    }

    /// The `Webhook-Signature` header for `body` sent at `unix_seconds`:
    /// `t=<seconds>,kid=<kid>,ed25519=<base64url of the signature of "<t>.<body>">`.
    pub(crate) fn signature_header(&self, unix_seconds: u64, body: &[u8]) -> String {
        let mut signed = format!("{unix_seconds}.").into_bytes();
        signed.extend_from_slice(body);
        let signature = self.pair.sign(&signed);
        format!(
            "t={unix_seconds},kid={},ed25519={}",
            self.kid,
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        )
    }
}

fn broken(what: &str) -> StorageError {
    StorageError::Backend {
        message: format!("the webhook signing key stream {KEY_STREAM} {what}"),
        source: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_impls::memory::MemoryStreamStorage;
    use ring::signature::{ED25519, UnparsedPublicKey};

    #[tokio::test]
    async fn the_stored_key_is_reused_and_its_signatures_verify() {
        let storage = MemoryStreamStorage::new();
        let first = SigningKey::load_or_create(&storage).await.expect("key");
        let again = SigningKey::load_or_create(&storage).await.expect("key");
        assert_eq!(first.kid(), again.kid());
        assert!(first.kid().starts_with("ds_"));

        let header = again.signature_header(1_700_000_000, b"{\"a\":1}");
        let (t, rest) = header.split_once(",kid=").expect("t");
        let (kid, sig) = rest.split_once(",ed25519=").expect("sig");
        assert_eq!((t, kid), ("t=1700000000", first.kid()));
        let jwks = first.jwks();
        let x = jwks["keys"][0]["x"].as_str().expect("x");
        let public = URL_SAFE_NO_PAD.decode(x).expect("b64");
        let signature = URL_SAFE_NO_PAD.decode(sig).expect("b64");
        let key = UnparsedPublicKey::new(&ED25519, public);
        assert!(key.verify(b"1700000000.{\"a\":1}", &signature).is_ok());
        assert!(key.verify(b"1700000001.{\"a\":1}", &signature).is_err());
    }
}
