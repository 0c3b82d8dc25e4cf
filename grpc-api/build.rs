//! Compiles the gRPC contracts in `schemas/proto` into Rust (prost messages, tonic servers and clients) and into one
//! file descriptor set, which the reflection service serves so that `grpcurl list` and `describe` work without the
//! files.
//!
//! protoc is the binary that the `protoc-bin-vendored` crate ships, handed to prost-build directly: a build never
//! downloads a compiler and never depends on one being installed.

use std::path::PathBuf;

/// The contracts, relative to the proto root. The two at the root have no package: the existing Python clients were
/// generated from them under these names.
const PROTOS: &[&str] = &["kerp/v1/vouchers.proto", "kerp/v1/reports.proto", "tax_scraper.proto", "insurance_edi.proto"];

/// Messages that carry credentials or personal data, whose generated `Debug` would print them: prost derives none for
/// these, and the service modules write one that redacts (prost requires one). One list, because prost-build's
/// `skip_debug` replaces what an earlier call gave it.
const DEBUG_WRITTEN_BY_HAND: &[&str] = &[".ScrapeInvoicesRequest", ".EmployeeData"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../schemas/proto");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    config.skip_debug(DEBUG_WRITTEN_BY_HAND);
    let protos: Vec<PathBuf> = PROTOS.iter().map(|p| root.join(p)).collect();
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .file_descriptor_set_path(out.join("kerp_descriptor.bin"))
        .compile_with_config(config, &protos, &[root])?;
    Ok(())
}
