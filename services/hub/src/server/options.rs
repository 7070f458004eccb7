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
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Key backends present to the API. `None`: the API answers 403.
    pub api_key: Option<String>,
    /// Token WebSocket clients must present (it grants every channel). `None` and no
    /// [`client_grants`](Self::client_grants): anyone may connect.
    pub client_token: Option<String>,
    /// Further client tokens, each allowing only its [`ClientGrants`] on channels.
    pub client_grants: Vec<(String, ClientGrants)>,
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

    /// Sets [`client_token`](Self::client_token).
    pub fn with_client_token(mut self, token: impl Into<String>) -> Self {
        self.client_token = Some(token.into());
        self
    }
}
