//! Prepares a machine to build the eBPF programs: the nightly toolchain's `rust-src`
//! (for `-Z build-std=core`) and `bpf-linker` built against the nightly toolchain's own
//! LLVM (no system LLVM is new enough). Each step first checks, so a prepared machine is
//! done in well under a second.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail};

use crate::cmd::{self, output};

/// bpf-linker release known to work with aya 0.14 and LLVM 22.
const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn run() -> anyhow::Result<()> {
    let start = Instant::now();
    let sysroot = nightly_sysroot()?;
    ensure_rust_src(&sysroot)?;
    ensure_bpf_linker(&sysroot)?;
    eprintln!(
        "setup: nightly rust-src and bpf-linker ready ({:.2?})",
        start.elapsed()
    );
    Ok(())
}

fn nightly_sysroot() -> anyhow::Result<PathBuf> {
    let query = || output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]));
    if let Some(sysroot) = query() {
        return Ok(PathBuf::from(sysroot));
    }
    eprintln!("setup: no nightly toolchain; installing it");
    cmd::run(Command::new("rustup").args([
        "toolchain",
        "install",
        "nightly",
        "--profile",
        "minimal",
    ]))
    .context("the eBPF programs build with the nightly toolchain, and installing it failed")?;
    query()
        .map(PathBuf::from)
        .context("rustc +nightly still does not run after installing it")
}

fn ensure_rust_src(sysroot: &Path) -> anyhow::Result<()> {
    let rustlib = sysroot.join("lib/rustlib");
    let present = || rustlib.join("src/rust/library/core/Cargo.toml").is_file();
    if present() {
        return Ok(());
    }
    eprintln!("setup: installing rust-src for the nightly toolchain");
    if cmd::run(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))
    .is_err()
    {
        // Machines without the rustup dist server get the component from the shared copy.
        let tarball = local_rust_src()
            .context("rustup could not add rust-src and no local copy was found")?;
        eprintln!("setup: rustup failed; unpacking {}", tarball.display());
        cmd::run(
            Command::new("tar")
                .arg("-xJf")
                .arg(&tarball)
                .arg("-C")
                .arg(&rustlib),
        )?;
    }
    if !present() {
        bail!("rust-src is still missing under {}", rustlib.display());
    }
    Ok(())
}

/// `rust-src-nightly-*.tar.xz` next to the checkout (`../shared/toolchain/`), or the file
/// named by `NODEWARD_RUST_SRC_TARBALL`.
fn local_rust_src() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NODEWARD_RUST_SRC_TARBALL") {
        return Some(PathBuf::from(path));
    }
    let dir = cmd::workspace_root().join("../shared/toolchain");
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("rust-src-nightly-") && n.ends_with(".tar.xz"))
        })
}

fn ensure_bpf_linker(sysroot: &Path) -> anyhow::Result<()> {
    // aya-build runs the linker through `rustup run nightly`, which also puts the nightly
    // toolchain's libLLVM on the library path: check it the same way.
    if output(Command::new("rustup").args(["run", "nightly", "bpf-linker", "--version"])).is_some()
    {
        return Ok(());
    }
    let major = llvm_major()?;
    let prefix = llvm_prefix(sysroot, major)?;
    eprintln!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against the nightly toolchain's LLVM {major} (about a minute)"
    );
    cmd::run(
        cmd::cargo(&[
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
        ])
        .env("LLVM_PREFIX", &prefix),
    )?;
    if output(Command::new("rustup").args(["run", "nightly", "bpf-linker", "--version"])).is_none()
    {
        bail!("bpf-linker was installed but does not run; is ~/.cargo/bin on PATH?");
    }
    Ok(())
}

/// The major version of the LLVM inside the nightly rustc.
fn llvm_major() -> anyhow::Result<u32> {
    let verbose = output(Command::new("rustc").args(["+nightly", "-vV"]))
        .context("running rustc +nightly -vV")?;
    let version = verbose
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .context("rustc +nightly -vV does not name its LLVM version")?;
    version
        .split('.')
        .next()
        .unwrap_or_default()
        .parse()
        .with_context(|| format!("LLVM version {version:?}"))
}

/// A directory laid out like an LLVM install (`lib/libLLVM.so`) that points at the nightly
/// toolchain's libLLVM, for bpf-linker's build. It lives in `CARGO_HOME` rather than /tmp
/// because the built linker keeps it as its library search path.
fn llvm_prefix(sysroot: &Path, major: u32) -> anyhow::Result<PathBuf> {
    let lib = sysroot.join("lib");
    let library = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .with_context(|| format!("no libLLVM.so.* in {}", lib.display()))?;
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let prefix = cargo_home.join(format!("nodeward-llvm-{major}"));
    let prefix_lib = prefix.join("lib");
    std::fs::create_dir_all(&prefix_lib)
        .with_context(|| format!("creating {}", prefix_lib.display()))?;
    let soname = library.file_name().context("libLLVM has a file name")?;
    for link in [prefix_lib.join("libLLVM.so"), prefix_lib.join(soname)] {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&library, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    Ok(prefix)
}

/// `/usr/lib/postgresql/<newest>/bin`, installing Debian's `postgresql` when absent: the
/// collector's PostgreSQL tests and its benchmark start private servers from it.
pub fn postgres_server() -> anyhow::Result<PathBuf> {
    if let Some(dir) = newest_server()? {
        return Ok(dir);
    }
    apt_install("postgresql")?;
    newest_server()?.context("apt-get installed postgresql but no server binaries were found")
}

/// Installs one of Debian's packages (needs root).
pub fn apt_install(package: &str) -> anyhow::Result<()> {
    if !crate::demo::is_root() {
        bail!("{package} is not installed and installing it needs root: apt-get install {package}");
    }
    eprintln!("setup: {package} is not installed; installing Debian's {package} package");
    cmd::run(Command::new("apt-get").arg("update"))?;
    cmd::run(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn newest_server() -> anyhow::Result<Option<PathBuf>> {
    let root = Path::new("/usr/lib/postgresql");
    if !root.is_dir() {
        return Ok(None);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    Ok(versions.pop().map(|(_, bin)| bin))
}
