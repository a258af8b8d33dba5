//! Which eBPF programs are attached to a cgroup, straight from the kernel (`BPF_PROG_QUERY`),
//! so tests can check that enforcement is attached once, stays attached, and is replaced
//! rather than stacked.

use std::os::fd::AsRawFd as _;
use std::path::Path;

/// The cgroup hooks nodeward uses (`enum bpf_attach_type` in include/uapi/linux/bpf.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachType {
    /// `BPF_CGROUP_INET_EGRESS`
    InetEgress,
    /// `BPF_CGROUP_INET4_CONNECT`
    Inet4Connect,
    /// `BPF_CGROUP_INET6_CONNECT`
    Inet6Connect,
    /// `BPF_CGROUP_UDP4_SENDMSG`
    Udp4Sendmsg,
    /// `BPF_CGROUP_UDP6_SENDMSG`
    Udp6Sendmsg,
}

impl AttachType {
    fn number(self) -> u32 {
        match self {
            Self::InetEgress => 1,
            Self::Inet4Connect => 10,
            Self::Inet6Connect => 11,
            Self::Udp4Sendmsg => 14,
            Self::Udp6Sendmsg => 15,
        }
    }
}

/// `BPF_PROG_QUERY`, from `enum bpf_cmd`.
const BPF_PROG_QUERY: libc::c_long = 16;
/// Most ids read; a cgroup hook holds at most 64 programs.
const MAX_PROGRAMS: usize = 64;

/// The `query` member of `union bpf_attr`, padded with explicit zeros to 160 bytes: the
/// kernel refuses an attribute whose unused tail is not zero, and implicit (compiler)
/// padding would be left uninitialised.
#[repr(C)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    padding: [u32; 33],
}

const _: () = assert!(size_of::<QueryAttr>() == 160);

/// The ids of the programs attached directly to `cgroup_dir` (not inherited) for `attach`.
/// Panics naming the cgroup if the query fails.
#[must_use]
#[expect(unsafe_code, reason = "the bpf(2) syscall has no safe wrapper here")]
pub fn attached_programs(cgroup_dir: &Path, attach: AttachType) -> Vec<u32> {
    let dir = std::fs::File::open(cgroup_dir)
        .unwrap_or_else(|e| panic!("open {}: {e}", cgroup_dir.display()));
    let mut ids = [0u32; MAX_PROGRAMS];
    let mut attr = QueryAttr {
        target_fd: u32::try_from(dir.as_raw_fd()).expect("fds are non-negative"),
        attach_type: attach.number(),
        query_flags: 0,
        attach_flags: 0,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: u32::try_from(MAX_PROGRAMS).expect("small"),
        padding: [0; 33],
    };
    // SAFETY: `attr` is a valid query attribute whose `prog_ids` points at `ids`, which has
    // room for `prog_cnt` ids and outlives the call; `dir` stays open across it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_QUERY,
            std::ptr::from_mut(&mut attr),
            size_of::<QueryAttr>(),
        )
    };
    assert!(
        ret == 0,
        "BPF_PROG_QUERY {attach:?} on {}: {}",
        cgroup_dir.display(),
        std::io::Error::last_os_error()
    );
    let count = usize::try_from(attr.prog_cnt)
        .expect("small")
        .min(MAX_PROGRAMS);
    ids[..count].to_vec()
}
