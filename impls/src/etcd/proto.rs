//! etcd's gRPC API, the part Courier uses: KV (Range, Put, Compact), Watch, and Lease (Grant,
//! Revoke, KeepAlive, Leases), with their messages. The code in `proto/` is generated from
//! `impls/proto/etcd` by `cargo run -p courier-codegen -- write` and checked in, so building
//! Courier needs no `protoc`; `courier-codegen check` fails when it drifts from the protos.
//! Names and fields are etcd's own: see etcd's API reference for what they mean.
// The generated items carry etcd's proto comments as docs, but not every item has one, and
// the code is the generator's style, not ours.
#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]

// Left as generated, so `courier-codegen check` compares byte for byte.
#[rustfmt::skip]
pub mod etcdserverpb;
#[rustfmt::skip]
pub mod mvccpb;
