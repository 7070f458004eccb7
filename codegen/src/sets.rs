//! Every set of .proto files whose generated Rust code is checked in. A new gRPC API is one
//! more entry here, then `courier-codegen write`.

/// One protoc run: some .proto files and where their generated code lives.
pub(crate) struct ProtoSet {
    /// Names the set in messages and in the generated files' headers.
    pub(crate) name: &'static str,
    /// The .proto files to compile, relative to the workspace root.
    pub(crate) protos: &'static [&'static str],
    /// Import roots (`-I`), relative to the workspace root.
    pub(crate) includes: &'static [&'static str],
    /// Where the generated files are checked in, relative to the workspace root. The directory
    /// holds generated files only: `check` reports any other file in it, `write` removes it.
    pub(crate) out_dir: &'static str,
    /// Generate gRPC client stubs.
    pub(crate) client: bool,
    /// Generate gRPC server traits.
    pub(crate) server: bool,
    /// Fully qualified `bytes` fields (`.pkg.Message.field`) generated as `bytes::Bytes`
    /// instead of `Vec<u8>`, so a payload is shared, not copied, between decode and delivery.
    pub(crate) bytes_fields: &'static [&'static str],
}

/// The proto sets, in the order they are generated.
pub(crate) const PROTO_SETS: &[ProtoSet] = &[
    ProtoSet {
        name: "etcd",
        protos: &[
            "impls/proto/etcd/api/etcdserverpb/rpc.proto",
            "impls/proto/etcd/api/mvccpb/kv.proto",
        ],
        includes: &["impls/proto"],
        out_dir: "impls/src/etcd/proto",
        // The etcd bus is a client of etcd, never a server.
        client: true,
        server: false,
        bytes_fields: &[],
    },
    ProtoSet {
        name: "danube",
        protos: &[
            "impls/proto/danube/DanubeApi.proto",
            "impls/proto/danube/SchemaRegistry.proto",
            "impls/proto/danube/DanubeAuth.proto",
            // Courier's own calls beside Danube's (package `courier_broker`).
            "impls/proto/courier/CourierAcks.proto",
            "impls/proto/courier/CourierProduce.proto",
        ],
        includes: &["impls/proto/danube", "impls/proto/courier"],
        out_dir: "impls/src/grpc/proto",
        // The broker serves these services and its client (and the tests of the gRPC
        // transport) calls them.
        client: true,
        server: true,
        // As upstream's danube-core build: the message payload is the one large field.
        bytes_fields: &[".danube.StreamMessage.payload"],
    },
];
