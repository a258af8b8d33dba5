//! The eBPF object is linked by `bpf-linker`, which cargo knows nothing about. Rebuilding
//! when its binary changes keeps a freshly installed linker from being ignored.

fn main() {
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        // The host build of this crate's (empty) library does not link eBPF; only say why a
        // later bpf build would fail.
        Err(err) => println!("cargo:warning=bpf-linker not found ({err}); run `cargo xtask setup`"),
    }
}
