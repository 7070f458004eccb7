//! [`Credentials`]: what the client sends as `authorization: Bearer …`: nothing, a token it
//! was given, or tokens it gets for an API key from `AuthService/Authenticate` at the service
//! URL, refreshed before they expire and once more when the broker answers `Unauthenticated`.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use courier_impls::grpc::proto::danube::AuthRequest;
use courier_impls::grpc::proto::danube::auth_service_client::AuthServiceClient;
use courier_impls::grpc::{Call, GrpcChannels, GrpcError};
use tokio::time::Instant;
use tonic::metadata::AsciiMetadataValue;

/// A token whose lifetime cannot be read is fetched again after this long.
const OPAQUE_TOKEN_REFRESH: Duration = Duration::from_secs(300);

/// How the client authenticates.
pub(crate) enum Credentials {
    /// No header.
    None,
    /// A fixed bearer (a token made elsewhere, or an API key the broker accepts as bearer).
    Static(AsciiMetadataValue),
    /// An API key exchanged for tokens.
    ApiKey(KeyTokens),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credentials::None => "None",
            Credentials::Static(_) => "Static(<redacted>)",
            Credentials::ApiKey(_) => "ApiKey(<redacted>)",
        })
    }
}

/// The bearer header for `token`.
///
/// Errors: [`GrpcError::Status`] `InvalidArgument` when it cannot be a header value.
pub(crate) fn bearer(token: &str) -> Result<AsciiMetadataValue, GrpcError> {
    let mut value: AsciiMetadataValue =
        format!("Bearer {token}")
            .parse()
            .map_err(|_| GrpcError::Status {
                code: tonic::Code::InvalidArgument,
                message: "the token is not a valid header value".to_owned(),
                retry_after: None,
            })?;
    value.set_sensitive(true);
    Ok(value)
}

impl Credentials {
    /// The header to send now, fetching or refreshing a key's token first.
    ///
    /// Errors: what `Authenticate` ended in (`Unauthenticated` for a bad key; connection
    /// failures and `Unavailable` are retryable).
    pub(crate) async fn header(&self) -> Result<Option<AsciiMetadataValue>, GrpcError> {
        match self {
            Credentials::None => Ok(None),
            Credentials::Static(value) => Ok(Some(value.clone())),
            Credentials::ApiKey(tokens) => tokens.header().await.map(Some),
        }
    }

    /// Drops a key's token so that the next [`header`](Self::header) fetches a new one;
    /// returns whether there was a key to do it with (a fixed token cannot be refreshed).
    pub(crate) fn invalidate(&self) -> bool {
        match self {
            Credentials::ApiKey(tokens) => {
                tokens.invalidate();
                true
            }
            Credentials::None | Credentials::Static(_) => false,
        }
    }
}

struct Current {
    header: AsciiMetadataValue,
    refresh_at: Instant,
}

/// Tokens for one API key, cached until 80 % of their lifetime has passed.
pub(crate) struct KeyTokens {
    key: String,
    service_url: String,
    channels: GrpcChannels,
    call_timeout: Duration,
    current: Mutex<Option<Current>>,
}

impl KeyTokens {
    pub(crate) fn new(
        key: String,
        service_url: String,
        channels: GrpcChannels,
        call_timeout: Duration,
    ) -> KeyTokens {
        KeyTokens {
            key,
            service_url,
            channels,
            call_timeout,
            current: Mutex::new(None),
        }
    }

    fn invalidate(&self) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    async fn header(&self) -> Result<AsciiMetadataValue, GrpcError> {
        if let Some(current) = self
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|current| Instant::now() < current.refresh_at)
        {
            return Ok(current.header.clone());
        }
        // No lock is held across the call: concurrent refreshes may each authenticate once,
        // which the broker allows; the last token stored wins.
        let call = Call::new(&self.service_url).deadline(self.call_timeout);
        let mut client = AuthServiceClient::new(self.channels.channel(&self.service_url)?);
        let token = call
            .unary(client.authenticate(call.request(AuthRequest {
                api_key: self.key.clone(),
            })))
            .await?
            .token;
        let header = bearer(&token)?;
        let refresh_at = Instant::now() + refresh_after(&token);
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(Current {
            header: header.clone(),
            refresh_at,
        });
        Ok(header)
    }
}

/// When to fetch a new token: after 80 % of its lifetime (`exp − iat`, read from the claims
/// without checking the signature, which is the broker's business), or after
/// [`OPAQUE_TOKEN_REFRESH`] when the claims cannot be read.
fn refresh_after(token: &str) -> Duration {
    let lifetime = token
        .split('.')
        .nth(1)
        .and_then(|payload| URL_SAFE_NO_PAD.decode(payload).ok())
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|claims| {
            let exp = claims.get("exp")?.as_u64()?;
            let iat = claims.get("iat")?.as_u64()?;
            exp.checked_sub(iat)
        });
    match lifetime {
        Some(seconds) => Duration::from_secs(seconds) * 4 / 5,
        None => OPAQUE_TOKEN_REFRESH,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Principal, Role, TokenSigner};

    #[test]
    fn tokens_are_refreshed_after_four_fifths_of_their_life() {
        let signer = TokenSigner::new(b"s".to_vec(), "courier", Duration::from_secs(3600));
        let token = signer.issue(
            &Principal {
                name: "p".to_owned(),
                kind: "service".to_owned(),
                roles: vec![Role::Produce],
            },
            1_000,
        );
        assert_eq!(refresh_after(&token), Duration::from_secs(2880));
        assert_eq!(refresh_after("opaque"), OPAQUE_TOKEN_REFRESH);
        assert_eq!(refresh_after("a.!!.c"), OPAQUE_TOKEN_REFRESH);
    }

    #[test]
    fn headers_are_marked_sensitive_and_debug_hides_them() {
        let value = bearer("t0k3n").expect("header");
        assert!(value.is_sensitive());
        assert!(!format!("{:?}", Credentials::Static(value)).contains("t0k3n"));
        assert!(bearer("bad\nvalue").is_err());
    }
}
