//! Every check CI makes, in the order that fails fastest: formatting, lints (host crates
//! and the eBPF crate), the build, then every test.

use std::process::Command;

use crate::cmd::{self, cargo, output};

pub fn run() -> anyhow::Result<()> {
    crate::setup::run()?;
    let postgres = crate::setup::postgres_server()?;
    eprintln!(
        "setup: PostgreSQL server binaries in {}",
        postgres.display()
    );
    cmd::run(&mut cargo(&["fmt", "--all", "--", "--check"]))?;
    cmd::run(&mut cargo(&[
        "clippy",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The eBPF crate is not a default member (it only builds for bpfel-unknown-none).
    cmd::run(
        Command::new("rustup")
            .args([
                "run",
                "nightly",
                "cargo",
                "clippy",
                "--package",
                "nodeward-ebpf",
                "--release",
            ])
            .args([
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--",
                "-D",
                "warnings",
            ])
            .current_dir(crate::cmd::workspace_root()),
    )?;
    // End-to-end tests run the real binaries.
    cmd::run(&mut cargo(&["build", "--bins"]))?;
    if output(&mut cargo(&["nextest", "--version"])).is_some() {
        cmd::run(&mut cargo(&["nextest", "run", "--no-fail-fast"]))?;
        cmd::run(&mut cargo(&["test", "--doc"]))
    } else {
        cmd::run(&mut cargo(&["test", "--no-fail-fast"]))
    }
}
