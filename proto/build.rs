//! Generates the nodeward.v1 messages and services. protox parses the .proto files in
//! pure Rust because these machines (and many CI images) have no `protoc`.

use std::{env, path::PathBuf};

use anyhow::Context as _;

const PROTOS: &[&str] = &[
    "nodeward/v1/finding.proto",
    "nodeward/v1/posture.proto",
    "nodeward/v1/agent.proto",
    "nodeward/v1/soc.proto",
    "nodeward/v1/enrollment.proto",
];

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed=nodeward");
    let fds = protox::compile(PROTOS, ["."]).context("parsing proto/nodeward/v1")?;
    let out = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    // Kept for gRPC reflection.
    std::fs::write(
        out.join("nodeward_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )
    .context("writing the file descriptor set")?;
    tonic_prost_build::configure()
        .compile_fds(fds)
        .context("generating Rust code from the descriptors")?;
    Ok(())
}
