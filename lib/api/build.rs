//! Generates the protobuf messages, tonic clients and servers, their proto3-JSON mapping
//! (for the REST mirror) and the descriptor set that server reflection serves.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/palisade/program/v1/program.proto",
    "proto/palisade/flow/v1/flow.proto",
    "proto/palisade/control/v1/control.proto",
    "proto/palisade/orchestrator/v1/orchestrator.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = out.join("palisade_descriptor.bin");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let mut config = tonic_prost_build::Config::new();
    // Debian's `protobuf-compiler` when it is there (or $PROTOC); else the protoc this
    // build carries, so `cargo build` needs nothing installed.
    if std::env::var_os("PROTOC").is_none() && !on_path("protoc") {
        config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    }
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptors)
        .compile_with_config(config, PROTOS, &["proto"])?;
    let set = std::fs::read(&descriptors)?;
    pbjson_build::Builder::new()
        .register_descriptors(&set)?
        .build(&[".palisade"])?;
    Ok(())
}

/// Whether an executable called `name` is on the PATH.
fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
}
