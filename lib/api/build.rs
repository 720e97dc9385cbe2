//! Generates the protobuf messages, tonic clients and servers, their proto3-JSON mapping
//! (for the REST mirror) and the descriptor set that server reflection serves.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/palisade/program/v1/program.proto",
    "proto/palisade/control/v1/control.proto",
    "proto/palisade/orchestrator/v1/orchestrator.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = out.join("palisade_descriptor.bin");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptors)
        .compile_protos(PROTOS, &["proto"])?;
    let set = std::fs::read(&descriptors)?;
    pbjson_build::Builder::new()
        .register_descriptors(&set)?
        .build(&[".palisade"])?;
    Ok(())
}
