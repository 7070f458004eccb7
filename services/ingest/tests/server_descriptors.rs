//! The server reads the envelope with descriptors decoded from the checked-in
//! `proto/causality-v1.binpb`, so building the crate needs no proto compiler. This test
//! recompiles the vendored protos with `protox` (pure Rust, no `protoc`) and fails when the
//! checked-in set has drifted from them. To regenerate after changing a vendored proto:
//! `COURIER_INGEST_REGENERATE_DESCRIPTORS=1 cargo nextest run -p courier-ingest --all-features
//! -E 'binary(server_descriptors)'`.

#![cfg(feature = "server")]

use std::path::Path;

fn compiled() -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let mut compiler = protox::Compiler::new([root]).expect("proto root");
    compiler.include_imports(true);
    compiler.include_source_info(false);
    compiler
        .open_file("causality/v1/service.proto")
        .expect("the vendored protos compile");
    compiler.descriptor_pool().encode_to_vec()
}

#[test]
fn checked_in_descriptor_set_matches_the_vendored_protos() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto/causality-v1.binpb");
    let fresh = compiled();
    if std::env::var_os("COURIER_INGEST_REGENERATE_DESCRIPTORS").is_some() {
        std::fs::write(&path, &fresh).expect("write the descriptor set");
    }
    let checked_in = std::fs::read(&path).expect("proto/causality-v1.binpb");
    assert!(
        checked_in == fresh,
        "proto/causality-v1.binpb differs from the vendored protos; regenerate it (see the test's doc)"
    );
}
