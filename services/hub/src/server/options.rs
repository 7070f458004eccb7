//! [`ServerOptions`]: what the HTTP layer needs besides the hub.

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
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Key backends present to the API. `None`: the API answers 403.
    pub api_key: Option<String>,
    /// Token WebSocket clients must present. `None`: anyone may connect.
    pub client_token: Option<String>,
}

impl ServerOptions {
    /// Sets [`api_key`](Self::api_key).
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Sets [`client_token`](Self::client_token).
    pub fn with_client_token(mut self, token: impl Into<String>) -> Self {
        self.client_token = Some(token.into());
        self
    }
}
