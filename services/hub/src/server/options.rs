//! [`ServerOptions`]: what the HTTP layer needs besides the hub.

use crate::ClientGrants;

/// What the HTTP layer needs besides the hub. Start from [`Default`] (no API key: the API
/// answers 403; no client token: anyone may connect) and set what you need with the `with_*`
/// methods; the fields are public for reading.
///
/// ```
/// use courier_hub::server::ServerOptions;
///
/// let options = ServerOptions::default().with_api_key("s3cret");
/// assert_eq!(options.api_key.as_deref(), Some("s3cret"));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Key backends present to the API. `None`: the API answers 403.
    pub api_key: Option<String>,
    /// Token WebSocket clients must present (it grants every channel). `None` and no
    /// [`client_grants`](Self::client_grants): anyone may connect.
    pub client_token: Option<String>,
    /// Further client tokens, each allowing only its [`ClientGrants`] on channels.
    pub client_grants: Vec<(String, ClientGrants)>,
    /// Text messages longer than this are compressed (gzip or brotli) for clients that ask (default
    /// 1024 bytes).
    pub compression_threshold: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            api_key: None,
            client_token: None,
            client_grants: Vec::new(),
            compression_threshold: 1024,
        }
    }
}

impl ServerOptions {
    /// Sets [`api_key`](Self::api_key).
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Adds a token to [`client_grants`](Self::client_grants).
    pub fn with_client_grant(mut self, token: impl Into<String>, grants: ClientGrants) -> Self {
        self.client_grants.push((token.into(), grants));
        self
    }

    /// Sets [`compression_threshold`](Self::compression_threshold).
    pub fn with_compression_threshold(mut self, bytes: usize) -> Self {
        self.compression_threshold = bytes;
        self
    }

    /// Sets [`client_token`](Self::client_token).
    pub fn with_client_token(mut self, token: impl Into<String>) -> Self {
        self.client_token = Some(token.into());
        self
    }
}
