//! gRPC over tonic: plain HTTP/2, and with the `grpc-tls` feature `https://` through rustls
//! with ring ([`GrpcChannels::with_tls`]).
//!
//! - [`GrpcChannels`]: one lazily connected [`GrpcChannel`] per server URL
//!   ([`normalise_url`]), for generated tonic stubs such as [`proto::danube`]'s. Plaintext
//!   channels write each call onto their HTTP/2 connection from the caller's task (h2, no
//!   worker task in between); `https://` ones are tonic's `Channel`.
//! - [`Call`]: a deadline for a unary or server-streaming call, and its failure as a
//!   [`GrpcError`], classified retryable or permanent by status code ([`code_class`]).
//! - [`GrpcTransport`]: the same calls through the byte-level
//!   [`RequestTransport`](courier_traits::transport::RequestTransport) trait.
//! - [`InProcessNetwork`]: servers and channels joined by in-memory pipes, for tests.
//!
//! The project's duplex trait has no gRPC implementation: the protocols served here
//! (Danube's) have no bidirectional-streaming call.

mod call;
mod channel;
mod channels;
mod direct;
mod error;
mod in_process;
mod options;
pub mod proto;
mod transport;
mod url;

pub use call::{Call, GrpcStream};
pub use channel::{GrpcBody, GrpcChannel};
pub use channels::GrpcChannels;
pub use error::{GrpcError, code_class, http_status};
pub use in_process::{InProcessListener, InProcessNetwork, InProcessStream};
pub use options::ChannelOptions;
pub use transport::GrpcTransport;
pub use url::normalise_url;

#[cfg(test)]
mod tests;
