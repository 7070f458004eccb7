//! [`Guard`]: the check every RPC but `Authenticate` passes: a bearer credential (a token of
//! ours, or an API key when allowed) whose principal holds the role the RPC needs. Valid
//! credentials are cached briefly, under their digest: the cache holds no secret.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tonic::Status;

use super::config::AuthConfig;
use super::keys::{Principal, Role};
use super::token::looks_like_jwt;

/// The longest a checked credential is trusted without checking it again.
pub const CACHE_TTL: Duration = Duration::from_secs(30);
/// Cached credentials at most; past it the cache starts over (expired ones go first).
const CACHE_CAPACITY: usize = 10_000;

/// The `Authenticate` RPC's path: the one RPC that needs no credential.
pub const AUTHENTICATE_PATH: &str = "/danube.AuthService/Authenticate";

/// What an RPC requires of its caller's roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// Any authenticated principal (lookups, health checks, reading schemas).
    Authenticated,
    /// This role (or `admin`).
    Role(Role),
}

/// The requirement of the RPC at `path` (`/package.Service/Method`). Unknown services need
/// `admin`: a new service is closed until it is given a rule here.
pub fn requirement(path: &str) -> Requirement {
    let (service, method) = path
        .strip_prefix('/')
        .and_then(|rest| rest.split_once('/'))
        .unwrap_or(("", ""));
    match service {
        // Courier's send stream: each message is a SendMessage.
        "danube.ProducerService" | "courier_broker.ProduceStreamService" => {
            Requirement::Role(Role::Produce)
        }
        "danube.ConsumerService" | "courier_broker.AckBatchService" => {
            Requirement::Role(Role::Consume)
        }
        "danube.Discovery" | "danube.HealthCheck" => Requirement::Authenticated,
        "danube_schema.SchemaRegistry" => match method {
            "GetSchema"
            | "GetLatestSchema"
            | "ListVersions"
            | "CheckCompatibility"
            | "GetTopicSchemaConfig"
            | "ListSubjects" => Requirement::Authenticated,
            // Producers register the schemas they write.
            "RegisterSchema" => Requirement::Role(Role::Produce),
            _ => Requirement::Role(Role::Admin),
        },
        _ => Requirement::Role(Role::Admin),
    }
}

/// Seconds since the Unix epoch (0 for a clock before it).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

struct Cached {
    principal: Principal,
    /// The token's `exp` (Unix seconds); `u64::MAX` for an API key.
    expires_unix: u64,
    /// When the cache stops trusting it.
    until: Instant,
}

/// Checks credentials against a node's keys and signer.
pub struct Guard {
    config: AuthConfig,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Guard {
    /// A guard over `config`.
    pub fn new(config: AuthConfig) -> Guard {
        Guard {
            config,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The configuration checked against.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// The principal allowed to call `path` with these request headers, or the status to
    /// answer: `Unauthenticated` (no, malformed, unknown or expired credential) or
    /// `PermissionDenied` (a valid one without the role). Statuses name no secret.
    pub fn check(&self, path: &str, headers: &http::HeaderMap) -> Result<Principal, Status> {
        let bearer = bearer(headers)
            .ok_or_else(|| Status::unauthenticated("authorization: Bearer <token> required"))?;
        let principal = self.authenticate(bearer)?;
        match requirement(path) {
            Requirement::Authenticated => Ok(principal),
            Requirement::Role(role) if principal.may(role) => Ok(principal),
            Requirement::Role(role) => Err(Status::permission_denied(format!(
                "principal {:?} lacks the {} role for {path}",
                principal.name,
                role.as_str()
            ))),
        }
    }

    fn authenticate(&self, bearer: &str) -> Result<Principal, Status> {
        let digest: [u8; 32] = Sha256::digest(bearer.as_bytes()).into();
        let now = Instant::now();
        let now_unix = unix_now();
        if let Some(principal) = self.cached(&digest, now, now_unix) {
            return Ok(principal);
        }
        let (principal, expires_unix) = if looks_like_jwt(bearer) {
            let claims = self
                .config
                .signer
                .verify(bearer, now_unix)
                .map_err(|e| Status::unauthenticated(e.to_string()))?;
            (claims.principal(), claims.exp)
        } else if self.config.accept_api_key_as_bearer {
            let principal = self
                .config
                .keys
                .principal(bearer)
                .cloned()
                .ok_or_else(|| Status::unauthenticated("invalid API key"))?;
            (principal, u64::MAX)
        } else {
            return Err(Status::unauthenticated("malformed token"));
        };
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, cached| cached.until > now && cached.expires_unix > now_unix);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(
            digest,
            Cached {
                principal: principal.clone(),
                expires_unix,
                until: now + CACHE_TTL,
            },
        );
        Ok(principal)
    }

    fn cached(&self, digest: &[u8; 32], now: Instant, now_unix: u64) -> Option<Principal> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let cached = cache.get(digest)?;
        if cached.until > now && cached.expires_unix > now_unix {
            return Some(cached.principal.clone());
        }
        cache.remove(digest);
        None
    }

    /// How many credentials are cached (tests).
    pub fn cached_len(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The credential of `authorization: Bearer <credential>` (scheme case-insensitive).
fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.trim().split_once(' ')?;
    let credential = credential.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty()).then_some(credential)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::{ApiKeys, KeyEntry, key_digest};
    use crate::auth::token::TokenSigner;

    fn guard(accept_key: bool) -> Guard {
        Guard::new(AuthConfig {
            keys: ApiKeys::new(vec![KeyEntry {
                sha256: key_digest("consumer-key"),
                principal: "reader".to_owned(),
                principal_type: "service".to_owned(),
                roles: vec![Role::Consume],
            }])
            .expect("keys"),
            signer: TokenSigner::new(b"s".to_vec(), "courier", Duration::from_secs(3600)),
            accept_api_key_as_bearer: accept_key,
            allow_plaintext: true,
        })
    }

    fn headers(value: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_str(value).expect("header"),
        );
        headers
    }

    #[test]
    fn rpcs_need_the_roles_of_their_service() {
        assert_eq!(
            requirement("/danube.ProducerService/SendMessage"),
            Requirement::Role(Role::Produce)
        );
        assert_eq!(
            requirement("/courier_broker.ProduceStreamService/SendMessages"),
            Requirement::Role(Role::Produce)
        );
        assert_eq!(
            requirement("/danube.ConsumerService/Ack"),
            Requirement::Role(Role::Consume)
        );
        assert_eq!(
            requirement("/courier_broker.AckBatchService/AckMany"),
            Requirement::Role(Role::Consume)
        );
        assert_eq!(
            requirement("/danube.Discovery/TopicLookup"),
            Requirement::Authenticated
        );
        assert_eq!(
            requirement("/danube.HealthCheck/HealthCheck"),
            Requirement::Authenticated
        );
        assert_eq!(
            requirement("/danube_schema.SchemaRegistry/GetLatestSchema"),
            Requirement::Authenticated
        );
        assert_eq!(
            requirement("/danube_schema.SchemaRegistry/SetCompatibilityMode"),
            Requirement::Role(Role::Admin)
        );
        for path in ["/danube.StorageService/GetSegment", "/x", "", "//"] {
            assert_eq!(requirement(path), Requirement::Role(Role::Admin), "{path}");
        }
    }

    #[test]
    fn the_bearer_scheme_is_required() {
        assert_eq!(bearer(&headers("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&headers("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(&headers("Basic abc")), None);
        assert_eq!(bearer(&headers("Bearer ")), None);
        assert_eq!(bearer(&http::HeaderMap::new()), None);
    }

    #[test]
    fn an_api_key_is_a_bearer_only_when_allowed() {
        let path = "/danube.ConsumerService/Subscribe";
        assert_eq!(
            guard(true)
                .check(path, &headers("Bearer consumer-key"))
                .map(|p| p.name)
                .ok(),
            Some("reader".to_owned())
        );
        let refused = guard(false)
            .check(path, &headers("Bearer consumer-key"))
            .expect_err("keys are not bearers here");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        let wrong_role = guard(true)
            .check(
                "/danube.ProducerService/SendMessage",
                &headers("Bearer consumer-key"),
            )
            .expect_err("consumer only");
        assert_eq!(wrong_role.code(), tonic::Code::PermissionDenied);
        assert!(!wrong_role.message().contains("consumer-key"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_checked_credential_is_trusted_for_at_most_the_cache_ttl() {
        let guard = guard(true);
        let path = "/danube.Discovery/TopicLookup";
        let token = guard.config().signer.issue(
            &Principal {
                name: "p".to_owned(),
                kind: "user".to_owned(),
                roles: vec![Role::Consume],
            },
            unix_now(),
        );
        guard
            .check(path, &headers(&format!("Bearer {token}")))
            .expect("valid");
        assert_eq!(guard.cached_len(), 1);
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now_unix = unix_now();
        assert!(guard.cached(&digest, Instant::now(), now_unix).is_some());
        tokio::time::advance(CACHE_TTL).await;
        assert!(
            guard.cached(&digest, Instant::now(), now_unix).is_none(),
            "trusted past {CACHE_TTL:?}"
        );
        // Nor past the token's own expiry, however recently it was checked.
        guard
            .check(path, &headers(&format!("Bearer {token}")))
            .expect("valid");
        let after_exp = now_unix + 3600;
        assert!(guard.cached(&digest, Instant::now(), after_exp).is_none());
    }
}
