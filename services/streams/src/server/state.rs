//! [`AppState`]: what every request handler of the server shares.

use std::sync::Arc;

use courier_traits::storage::StreamStorage;
use tokio_util::sync::CancellationToken;

use super::config::ServerConfig;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

struct Shared {
    storage: Arc<dyn StreamStorage>,
    config: ServerConfig,
    shutdown: CancellationToken,
}

impl AppState {
    pub(crate) fn new(storage: Arc<dyn StreamStorage>, config: ServerConfig) -> AppState {
        AppState(Arc::new(Shared {
            storage,
            config,
            shutdown: CancellationToken::new(),
        }))
    }

    pub(crate) fn storage(&self) -> &dyn StreamStorage {
        &*self.0.storage
    }
    pub(crate) fn config(&self) -> &ServerConfig {
        &self.0.config
    }
    /// Cancelled when the server shuts down: live reads answer and end.
    pub(crate) fn shutdown(&self) -> &CancellationToken {
        &self.0.shutdown
    }
}
