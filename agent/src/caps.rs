//! Capability checks, so a missing privilege is reported as such rather than as an
//! obscure `EPERM` from the `bpf()` syscall.

const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// The effective capability set of this process, from /proc/self/status.
fn effective() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

/// Loading programs and attaching them to cgroups needs `CAP_BPF` (or `CAP_SYS_ADMIN` on
/// kernels before 5.8, and for the cgroup attach on some distributions).
pub fn require_bpf() -> Result<(), String> {
    let caps = effective().ok_or("cannot read CapEff from /proc/self/status")?;
    let has = |cap: u32| caps & (1 << cap) != 0;
    if has(CAP_BPF) || has(CAP_SYS_ADMIN) {
        Ok(())
    } else {
        Err("the agent lacks CAP_BPF (and CAP_SYS_ADMIN); run it as root or grant CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON".into())
    }
}
