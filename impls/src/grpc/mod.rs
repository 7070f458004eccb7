//! gRPC over tonic.

pub mod proto;
