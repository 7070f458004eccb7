//! `courier broker`'s auth and TLS settings (flags, the config file's `auth:` and `tls:`
//! sections), `courier broker hash-key` and `courier broker token`.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use courier::broker::auth::{
    ApiKeys, AuthConfig, DEFAULT_ISSUER, DEFAULT_TOKEN_TTL, KeyEntry, TokenSigner, key_digest,
};
use courier::broker::tls::ServerTls;
use serde::Deserialize;

use crate::config::{self, parse_duration};

/// The shortest signing secret accepted, in bytes.
const MIN_SECRET_BYTES: usize = 32;

/// `auth.mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AuthMode {
    /// No credentials asked.
    #[default]
    None,
    /// API keys exchanged for HS256 tokens; every RPC needs a bearer.
    Jwt,
}

/// Auth and TLS flags (each also from the environment); they override the file's sections.
#[derive(Args, Debug, Default)]
pub(crate) struct SecurityArgs {
    /// Authentication: none | jwt [default: none].
    #[arg(long, env = "COURIER_BROKER_AUTH_MODE", value_enum)]
    auth_mode: Option<AuthMode>,
    /// jwt: YAML list of API keys (`- {sha256: <from hash-key>, principal: NAME,
    /// roles: [produce, consume, admin]}`).
    #[arg(long, env = "COURIER_BROKER_KEYS_FILE")]
    keys_file: Option<PathBuf>,
    /// jwt: file holding the token signing secret (at least 32 bytes; every node of a
    /// cluster needs the same) [default: random per start, tokens die with the process].
    #[arg(long, env = "COURIER_BROKER_JWT_SECRET_FILE")]
    jwt_secret_file: Option<PathBuf>,
    /// jwt: how long issued tokens are valid [default: 1h].
    #[arg(long, env = "COURIER_BROKER_TOKEN_TTL", value_parser = parse_duration)]
    token_ttl: Option<Duration>,
    /// jwt: accept an API key itself as the bearer (what danube-client's with_api_key sends)
    /// [default: true].
    #[arg(long, env = "COURIER_BROKER_ACCEPT_API_KEY_AS_BEARER")]
    accept_api_key_as_bearer: Option<bool>,
    /// jwt: allow auth without TLS (credentials in the clear: loopback tests only)
    /// [default: false].
    #[arg(long, env = "COURIER_BROKER_ALLOW_PLAINTEXT")]
    allow_plaintext: Option<bool>,
    /// TLS: the server certificate chain (PEM); with --tls-key turns TLS on.
    #[arg(long, env = "COURIER_BROKER_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// TLS: the certificate's private key (PEM).
    #[arg(long, env = "COURIER_BROKER_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// TLS: CA (PEM) whose client certificates are required (mutual TLS).
    #[arg(long, env = "COURIER_BROKER_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,
}

/// The config file's `auth:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthFile {
    mode: Option<AuthMode>,
    keys_file: Option<PathBuf>,
    secret_file: Option<PathBuf>,
    #[serde(default, with = "config::duration")]
    token_ttl: Option<Duration>,
    accept_api_key_as_bearer: Option<bool>,
    allow_plaintext: Option<bool>,
}

/// The config file's `tls:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsFile {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
}

/// `auth.mode: jwt`, resolved (files not read yet).
#[derive(Debug, PartialEq)]
struct JwtSettings {
    keys_file: PathBuf,
    secret_file: Option<PathBuf>,
    token_ttl: Duration,
    accept_api_key_as_bearer: bool,
    allow_plaintext: bool,
}

/// TLS files, resolved.
#[derive(Debug, PartialEq)]
struct TlsPaths {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

/// Auth and TLS, resolved: flag, then environment, then file, then default.
#[derive(Debug, PartialEq)]
pub(crate) struct Security {
    jwt: Option<JwtSettings>,
    tls: Option<TlsPaths>,
}

impl Security {
    pub(crate) fn resolve(
        args: SecurityArgs,
        auth: Option<AuthFile>,
        tls: Option<TlsFile>,
    ) -> Result<Security, String> {
        let auth = auth.unwrap_or_default();
        let tls = tls.unwrap_or_default();
        let jwt = match args.auth_mode.or(auth.mode).unwrap_or_default() {
            AuthMode::None => None,
            AuthMode::Jwt => Some(JwtSettings {
                keys_file: args
                    .keys_file
                    .or(auth.keys_file)
                    .ok_or("auth mode jwt needs a keys file (--keys-file, auth.keys_file)")?,
                secret_file: args.jwt_secret_file.or(auth.secret_file),
                token_ttl: args
                    .token_ttl
                    .or(auth.token_ttl)
                    .unwrap_or(DEFAULT_TOKEN_TTL),
                accept_api_key_as_bearer: args
                    .accept_api_key_as_bearer
                    .or(auth.accept_api_key_as_bearer)
                    .unwrap_or(true),
                allow_plaintext: args
                    .allow_plaintext
                    .or(auth.allow_plaintext)
                    .unwrap_or(false),
            }),
        };
        if jwt
            .as_ref()
            .is_some_and(|jwt| jwt.token_ttl < Duration::from_secs(60))
        {
            // The client refreshes ahead of expiry; a shorter life would mean constant renewal.
            return Err("token_ttl must be at least 60s".into());
        }
        let tls = match (
            args.tls_cert.or(tls.cert),
            args.tls_key.or(tls.key),
            args.tls_client_ca.or(tls.client_ca),
        ) {
            (Some(cert), Some(key), client_ca) => Some(TlsPaths {
                cert,
                key,
                client_ca,
            }),
            (None, None, None) => None,
            _ => {
                return Err(
                    "TLS needs both a certificate and its key (--tls-cert, --tls-key)".into(),
                );
            }
        };
        Ok(Security { jwt, tls })
    }

    /// The scheme this node's URLs take.
    pub(crate) fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Reads the files: the TLS material and the auth keys and secret. `cluster`: several
    /// nodes must verify each other's tokens, so a random secret is refused.
    pub(crate) fn load(
        &self,
        cluster: bool,
    ) -> Result<(Option<AuthConfig>, Option<ServerTls>), String> {
        let tls = self
            .tls
            .as_ref()
            .map(|paths| {
                ServerTls::from_files(&paths.cert, &paths.key, paths.client_ca.as_deref())
                    .map_err(|e| e.to_string())
            })
            .transpose()?;
        let Some(jwt) = &self.jwt else {
            return Ok((None, tls));
        };
        let keys = load_keys(&jwt.keys_file)?;
        let secret = match &jwt.secret_file {
            Some(path) => load_secret(path)?,
            None if cluster => {
                return Err(
                    "auth mode jwt on a cluster needs a shared --jwt-secret-file (each node \
                     must verify the others' tokens)"
                        .into(),
                );
            }
            None => {
                tracing::warn!(
                    "no jwt secret file: tokens are signed with a random secret and die with \
                     this process"
                );
                courier::broker::auth::random_secret()
            }
        };
        let auth = AuthConfig {
            keys,
            signer: TokenSigner::new(secret, DEFAULT_ISSUER, jwt.token_ttl),
            accept_api_key_as_bearer: jwt.accept_api_key_as_bearer,
            allow_plaintext: jwt.allow_plaintext,
        };
        Ok((Some(auth), tls))
    }
}

/// Reads a keys file: a YAML (or JSON) list of key entries.
fn load_keys(path: &Path) -> Result<ApiKeys, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read keys file {}: {e}", path.display()))?;
    let entries: Vec<KeyEntry> =
        serde_yaml_ng::from_str(&text).map_err(|e| format!("keys file {}: {e}", path.display()))?;
    let keys = ApiKeys::new(entries).map_err(|e| format!("keys file {}: {e}", path.display()))?;
    if keys.is_empty() {
        return Err(format!("keys file {}: no keys", path.display()));
    }
    Ok(keys)
}

/// Reads the signing secret (a trailing newline is not part of it).
fn load_secret(path: &Path) -> Result<Vec<u8>, String> {
    let mut secret = std::fs::read(path)
        .map_err(|e| format!("cannot read jwt secret file {}: {e}", path.display()))?;
    while secret
        .last()
        .is_some_and(|byte| matches!(byte, b'\n' | b'\r'))
    {
        secret.pop();
    }
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "jwt secret file {}: at least {MIN_SECRET_BYTES} bytes are needed",
            path.display()
        ));
    }
    Ok(secret)
}

/// `courier broker hash-key`.
#[derive(Args, Debug)]
pub(crate) struct HashKeyArgs {
    /// The API key [default: read from the first line of stdin, which keeps it out of the
    /// shell history].
    key: Option<String>,
}

/// The key given as an argument, or the first line of stdin.
fn key_argument(key: Option<String>) -> Result<String, String> {
    let key = match key {
        Some(key) => key,
        None => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| format!("cannot read the key from stdin: {e}"))?;
            line.trim_end_matches(['\n', '\r']).to_owned()
        }
    };
    if key.is_empty() {
        return Err("empty key".into());
    }
    Ok(key)
}

/// Prints the SHA-256 of the key: the `sha256` of its entry in the keys file.
pub(crate) fn hash_key(args: HashKeyArgs) -> Result<(), String> {
    println!("{}", key_digest(&key_argument(args.key)?));
    Ok(())
}

/// `courier broker token`.
#[derive(Args, Debug)]
pub(crate) struct TokenArgs {
    /// The keys file the brokers use (the key must be in it: the token carries its principal
    /// and roles).
    #[arg(long)]
    keys_file: PathBuf,
    /// The signing secret the brokers use (`--jwt-secret-file`).
    #[arg(long)]
    jwt_secret_file: PathBuf,
    /// How long the token is valid (`90s`, `15m`, `1h`).
    #[arg(long, value_parser = parse_duration, default_value = "1h")]
    ttl: Duration,
    /// The API key [default: read from the first line of stdin].
    key: Option<String>,
}

/// Prints the token `Authenticate` would answer for the key: same claims, issuer and secret,
/// so any broker sharing that secret accepts it until it expires.
pub(crate) fn token(args: TokenArgs) -> Result<(), String> {
    let key = key_argument(args.key)?;
    let keys = load_keys(&args.keys_file)?;
    let principal = keys.principal(&key).ok_or_else(|| {
        format!(
            "the key is not in keys file {} (its sha256 is {})",
            args.keys_file.display(),
            key_digest(&key)
        )
    })?;
    let secret = load_secret(&args.jwt_secret_file)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| format!("the system clock is before 1970: {e}"))?
        .as_secs();
    let signer = TokenSigner::new(secret, DEFAULT_ISSUER, args.ttl);
    println!("{}", signer.issue(principal, now));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(args: SecurityArgs, auth: &str, tls: &str) -> Result<Security, String> {
        let auth: Option<AuthFile> = serde_yaml_ng::from_str(auth).expect("auth yaml");
        let tls: Option<TlsFile> = serde_yaml_ng::from_str(tls).expect("tls yaml");
        Security::resolve(args, auth, tls)
    }

    #[test]
    fn off_by_default_and_files_then_flags() {
        let none = resolve(SecurityArgs::default(), "", "").expect("defaults");
        assert_eq!(
            none,
            Security {
                jwt: None,
                tls: None
            }
        );
        assert_eq!(none.scheme(), "http");
        let s = resolve(
            SecurityArgs {
                allow_plaintext: Some(true),
                ..Default::default()
            },
            "mode: jwt\nkeys_file: keys.yaml\ntoken_ttl: 10m\naccept_api_key_as_bearer: false\n",
            "cert: s.pem\nkey: s.key\nclient_ca: ca.pem\n",
        )
        .expect("resolves");
        let jwt = s.jwt.as_ref().expect("jwt");
        assert_eq!(jwt.keys_file, PathBuf::from("keys.yaml"));
        assert_eq!(jwt.token_ttl, Duration::from_secs(600));
        assert!(!jwt.accept_api_key_as_bearer && jwt.allow_plaintext);
        assert_eq!(s.scheme(), "https");
        assert_eq!(
            s.tls.as_ref().and_then(|t| t.client_ca.clone()),
            Some(PathBuf::from("ca.pem"))
        );
        let flags = SecurityArgs {
            auth_mode: Some(AuthMode::None),
            ..Default::default()
        };
        assert_eq!(
            resolve(flags, "mode: jwt\n", "").expect("flag wins").jwt,
            None
        );
    }

    #[test]
    fn incomplete_settings_are_refused() {
        assert!(
            resolve(SecurityArgs::default(), "mode: jwt\n", "").is_err(),
            "no keys file"
        );
        assert!(
            resolve(SecurityArgs::default(), "", "cert: s.pem\n").is_err(),
            "no key"
        );
        assert!(
            resolve(
                SecurityArgs::default(),
                "mode: jwt\nkeys_file: k\ntoken_ttl: 5s\n",
                ""
            )
            .is_err()
        );
        assert!(serde_yaml_ng::from_str::<AuthFile>("mood: jwt\n").is_err());
    }

    #[test]
    fn keys_and_secret_files_load_and_a_cluster_needs_a_shared_secret() {
        let dir = tempfile::tempdir().expect("dir");
        let keys = dir.path().join("keys.yaml");
        std::fs::write(
            &keys,
            format!(
                "- sha256: {}\n  principal: app\n  roles: [produce, consume]\n",
                key_digest("k1")
            ),
        )
        .expect("write");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, format!("{}\n", "s".repeat(40))).expect("write");
        let security = |secret_file: Option<PathBuf>| Security {
            jwt: Some(JwtSettings {
                keys_file: keys.clone(),
                secret_file,
                token_ttl: DEFAULT_TOKEN_TTL,
                accept_api_key_as_bearer: true,
                allow_plaintext: true,
            }),
            tls: None,
        };
        let (auth, tls) = security(Some(secret.clone())).load(true).expect("loads");
        let auth = auth.expect("jwt");
        assert!(tls.is_none());
        assert_eq!(
            auth.keys.principal("k1").map(|p| p.name.as_str()),
            Some("app")
        );
        assert!(
            security(None).load(true).is_err(),
            "random secret on a cluster"
        );
        assert!(security(None).load(false).is_ok());
        std::fs::write(&secret, "short").expect("write");
        assert!(security(Some(secret)).load(false).is_err(), "short secret");
        std::fs::write(
            &keys,
            "- sha256: nope\n  principal: app\n  roles: [admin]\n",
        )
        .expect("write");
        assert!(security(None).load(false).is_err(), "bad digest");
    }
}
