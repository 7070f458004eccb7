//! [`ClientOptions`]: what a connection is registered with (kept apart from the hub so that the
//! connection code, which the hub starts, does not import the hub).

use crate::Frame;
use crate::channels::ClientGrants;
use crate::compression::Compression;

/// What one connection gets besides its id. Start from [`Default`] (no greeting, every
/// channel grant, no compression).
///
/// ```
/// use courier_hub::{ClientOptions, Compression, Frame};
/// let options = ClientOptions::default()
///     .with_greeting(Frame::text("hello"))
///     .with_compression(Compression::Gzip { threshold: 1024 });
/// assert!(options.compression.is_some());
/// ```
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ClientOptions {
    /// A frame the client receives before any other (the server's `welcome`).
    pub greeting: Option<Frame>,
    /// What the client's token allows on channels.
    pub grants: ClientGrants,
    /// How large server messages are compressed, if the client asked.
    pub compression: Option<Compression>,
}

impl ClientOptions {
    /// Sets [`greeting`](Self::greeting).
    pub fn with_greeting(mut self, greeting: Frame) -> Self {
        self.greeting = Some(greeting);
        self
    }

    /// Sets [`grants`](Self::grants).
    pub fn with_grants(mut self, grants: ClientGrants) -> Self {
        self.grants = grants;
        self
    }

    /// Sets [`compression`](Self::compression).
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = Some(compression);
        self
    }
}
