//! The Danube messaging wire protocol (package `danube`: producers, consumers, discovery,
//! health checks, storage segments) and its schema registry (package `danube_schema`), client
//! stubs and server traits. The code in `proto/` is generated from `impls/proto/danube` (the
//! upstream files, unmodified) by `cargo run -p courier-codegen -- write` and checked in, so
//! building Courier needs no `protoc`; `courier-codegen check` fails when it drifts from the
//! protos. Names and fields are Danube's own; `impls/proto/danube/README.md` names the source.
// The generated items carry Danube's proto comments as docs, but not every item has one, and
// the code is the generator's style, not ours.
#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]

// Left as generated, so `courier-codegen check` compares byte for byte.
#[rustfmt::skip]
pub mod danube;
#[rustfmt::skip]
pub mod danube_schema;
// Courier's own calls beside Danube's (`impls/proto/courier/`): a consumer's acks of many
// messages in one call, a producer's sends on one open stream; Danube brokers answer
// UNIMPLEMENTED.
#[rustfmt::skip]
pub mod courier_broker;
