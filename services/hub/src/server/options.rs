//! [`ServerOptions`]: what the HTTP layer needs besides the hub.

/// What the HTTP layer needs besides the hub.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// Key backends present to the API. `None`: the API answers 403.
    pub api_key: Option<String>,
    /// Token WebSocket clients must present. `None`: anyone may connect.
    pub client_token: Option<String>,
}
