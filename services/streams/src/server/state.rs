//! [`AppState`]: what every request handler of the server shares.

use std::sync::Arc;

use courier_traits::storage::StreamStorage;
use tokio_util::sync::CancellationToken;

use super::config::ServerConfig;
use super::subscriptions::Subscriptions;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

struct Shared {
    storage: Arc<dyn StreamStorage>,
    config: ServerConfig,
    shutdown: CancellationToken,
    subscriptions: Option<Subscriptions>,
}

impl AppState {
    pub(crate) fn new(storage: Arc<dyn StreamStorage>, config: ServerConfig) -> AppState {
        let shutdown = CancellationToken::new();
        let subscriptions = config
            .subscriptions
            .clone()
            .map(|settings| Subscriptions::new(storage.clone(), settings, shutdown.child_token()));
        AppState(Arc::new(Shared {
            storage,
            config,
            shutdown,
            subscriptions,
        }))
    }

    pub(crate) fn storage(&self) -> &dyn StreamStorage {
        &*self.0.storage
    }
    pub(crate) fn config(&self) -> &ServerConfig {
        &self.0.config
    }
    /// The subscription service, when enabled.
    pub(crate) fn subscriptions(&self) -> Option<&Subscriptions> {
        self.0.subscriptions.as_ref()
    }
    /// Tells the subscription service (if enabled) that `stream` got records after `before`
    /// (`None`: it was created with them).
    pub(crate) fn appended(
        &self,
        stream: &courier_traits::storage::StreamName,
        before: Option<courier_traits::storage::Offset>,
    ) {
        if let Some(subscriptions) = &self.0.subscriptions {
            subscriptions.appended(stream, before);
        }
    }
    /// Cancelled when the server shuts down: live reads answer and end.
    pub(crate) fn shutdown(&self) -> &CancellationToken {
        &self.0.shutdown
    }
}
