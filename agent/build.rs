//! Builds the eBPF programs (crate `nodeward-ebpf`, target bpfel-unknown-none, nightly
//! toolchain) and leaves the object in `OUT_DIR`, where `src/bpf.rs` embeds it.

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    // aya-build turns every line the inner cargo prints into a cargo warning; keep only
    // what matters (errors and warnings still print when quiet).
    // SAFETY: build scripts are single-threaded; nothing reads the environment concurrently.
    unsafe { std::env::set_var("CARGO_TERM_QUIET", "true") };
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../ebpf");
    // aya-build watches the eBPF crate only; the types it shares with the agent change too.
    println!(
        "cargo:rerun-if-changed={}",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../common")
    );
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "nodeward-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
    .context("building the eBPF programs; `cargo xtask setup` installs what they need")
}
