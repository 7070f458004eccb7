//! What every HTTP handler of the hub server shares.

use super::options::ServerOptions;
use crate::Hub;

#[derive(Debug)]
pub(super) struct ServerState {
    pub(super) hub: Hub,
    pub(super) options: ServerOptions,
}
