//! API keys as the broker stores them: the SHA-256 of each key (hex), never the key, with the
//! principal it authenticates and that principal's roles.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a principal may do. `admin` may do everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Create producers and send messages; register schemas.
    Produce,
    /// Subscribe, receive, ack and nack.
    Consume,
    /// Every RPC, including the registry's administrative ones.
    Admin,
}

impl Role {
    /// The role's name as written in key files and tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Produce => "produce",
            Role::Consume => "consume",
            Role::Admin => "admin",
        }
    }
}

/// Who a key or token speaks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// The principal's name (the token's `sub` and `principal_name`).
    pub name: String,
    /// What kind of principal (`user`, `service`, ...; the token's `principal_type`).
    #[serde(rename = "type", default = "default_principal_type")]
    pub kind: String,
    /// What it may do.
    pub roles: Vec<Role>,
}

fn default_principal_type() -> String {
    "service".to_owned()
}

impl Principal {
    /// Whether the principal holds `role` (admins hold every role).
    pub fn may(&self, role: Role) -> bool {
        self.roles
            .iter()
            .any(|held| *held == role || *held == Role::Admin)
    }
}

/// One stored key: the key file's entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// SHA-256 of the key, 64 hex digits (what `courier broker hash-key` prints).
    pub sha256: String,
    /// The principal's name.
    pub principal: String,
    /// The principal's kind [default: `service`].
    #[serde(default = "default_principal_type")]
    pub principal_type: String,
    /// Its roles.
    pub roles: Vec<Role>,
}

/// Why a key entry was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The digest is not 64 hex digits.
    #[error("key entry for {principal:?}: sha256 must be 64 hex digits")]
    BadDigest {
        /// The entry's principal.
        principal: String,
    },
    /// The entry names no principal or no role.
    #[error("key entry {index}: a principal name and at least one role are required")]
    Incomplete {
        /// The entry's position in the list.
        index: usize,
    },
}

/// The SHA-256 of `key`, lowercase hex: the form a key is stored in.
pub fn key_digest(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(digest)
}

/// The keys a node accepts.
#[derive(Clone, Default)]
pub struct ApiKeys {
    entries: Vec<([u8; 32], Principal)>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Digests are not secrets, but nothing is gained by printing them.
        f.debug_struct("ApiKeys")
            .field("keys", &self.entries.len())
            .finish()
    }
}

impl ApiKeys {
    /// The keys of `entries`.
    ///
    /// Errors: [`KeyError`] for a malformed digest or an entry without principal or roles.
    pub fn new(entries: Vec<KeyEntry>) -> Result<ApiKeys, KeyError> {
        let mut parsed = Vec::with_capacity(entries.len());
        for (index, entry) in entries.into_iter().enumerate() {
            if entry.principal.trim().is_empty() || entry.roles.is_empty() {
                return Err(KeyError::Incomplete { index });
            }
            let digest = parse_digest(&entry.sha256).ok_or_else(|| KeyError::BadDigest {
                principal: entry.principal.clone(),
            })?;
            parsed.push((
                digest,
                Principal {
                    name: entry.principal,
                    kind: entry.principal_type,
                    roles: entry.roles,
                },
            ));
        }
        Ok(ApiKeys { entries: parsed })
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The principal `key` authenticates, if any. Every stored digest is compared, each in
    /// constant time, so timing tells neither which entry matched nor how much of it.
    pub fn principal(&self, key: &str) -> Option<&Principal> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let mut found = None;
        for (stored, principal) in &self.entries {
            if bool::from(stored.ct_eq(&digest)) && found.is_none() {
                found = Some(principal);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, principal: &str, roles: Vec<Role>) -> KeyEntry {
        KeyEntry {
            sha256: key_digest(key),
            principal: principal.to_owned(),
            principal_type: "service".to_owned(),
            roles,
        }
    }

    #[test]
    fn the_digest_is_sha256_hex() {
        // FIPS 180-2's "abc" example.
        assert_eq!(
            key_digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_key_finds_its_principal_and_no_other_key_does() {
        let keys = ApiKeys::new(vec![
            entry("k-producer", "orders-app", vec![Role::Produce]),
            entry("k-admin", "ops", vec![Role::Admin]),
        ])
        .expect("keys");
        assert_eq!(
            keys.principal("k-producer").map(|p| p.name.as_str()),
            Some("orders-app")
        );
        assert_eq!(
            keys.principal("k-admin").map(|p| p.name.as_str()),
            Some("ops")
        );
        assert_eq!(keys.principal("k-produce"), None);
        assert_eq!(keys.principal(""), None);
        let admin = keys.principal("k-admin").expect("admin");
        assert!(admin.may(Role::Consume) && admin.may(Role::Produce));
        let producer = keys.principal("k-producer").expect("producer");
        assert!(producer.may(Role::Produce) && !producer.may(Role::Consume));
    }

    #[test]
    fn malformed_entries_are_refused() {
        let mut bad = entry("k", "p", vec![Role::Consume]);
        bad.sha256 = "xyz".to_owned();
        assert!(matches!(
            ApiKeys::new(vec![bad]),
            Err(KeyError::BadDigest { .. })
        ));
        let mut bad = entry("k", "p", vec![Role::Consume]);
        bad.sha256 = "é".repeat(32);
        assert!(matches!(
            ApiKeys::new(vec![bad]),
            Err(KeyError::BadDigest { .. })
        ));
        assert_eq!(
            ApiKeys::new(vec![entry("k", "p", vec![])]).err(),
            Some(KeyError::Incomplete { index: 0 })
        );
        assert_eq!(
            ApiKeys::new(vec![entry("k", " ", vec![Role::Admin])]).err(),
            Some(KeyError::Incomplete { index: 0 })
        );
    }
}
