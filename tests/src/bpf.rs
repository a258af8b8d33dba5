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
    /// `BPF_CGROUP_INET_SOCK_CREATE`
    InetSockCreate,
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
            Self::InetSockCreate => 2,
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

/// The `query` member of `union bpf_attr` in include/uapi/linux/bpf.h:
///
/// ```text
/// struct {                       /* used by BPF_PROG_QUERY */
///     __u32 target_fd;           /* offset 0, a union with target_ifindex */
///     __u32 attach_type;         /* 4 */
///     __u32 query_flags;         /* 8: 0, or BPF_F_QUERY_EFFECTIVE */
///     __u32 attach_flags;        /* 12, out */
///     __aligned_u64 prog_ids;    /* 16, in: buffer; out: filled */
///     __u32 prog_cnt;            /* 24, in: buffer size; out: attached count */
///     __u32 :32;
///     __aligned_u64 prog_attach_flags, link_ids, link_attach_flags, revision;  /* newer */
/// } query;
/// ```
///
/// The fields after `prog_cnt` are left zero (not wanted) in the explicit padding that
/// takes the attribute to 160 bytes, more than the union has ever been: the kernel reads
/// what it knows, requires the rest to be zero, and compiler padding would be uninitialised.
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

/// `BPF_PROG_LOAD`, `BPF_OBJ_PIN` and `BPF_LINK_CREATE`, from `enum bpf_cmd`.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_LINK_CREATE: libc::c_long = 28;
/// `BPF_PROG_TYPE_CGROUP_SKB`, from `enum bpf_prog_type`.
const BPF_PROG_TYPE_CGROUP_SKB: u32 = 8;

/// Calls bpf(2) with `attr` (a `union bpf_attr` member padded to 160 bytes); returns the
/// result, panicking with `what` on failure.
#[expect(unsafe_code, reason = "the bpf(2) syscall has no safe wrapper here")]
fn bpf(cmd: libc::c_long, attr: &mut [u64; 20], what: &str) -> i32 {
    // SAFETY: `attr` is 160 zero-initialised bytes with the command's fields filled in;
    // any pointers in it refer to buffers that outlive the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            size_of::<[u64; 20]>(),
        )
    };
    assert!(ret >= 0, "{what}: {}", std::io::Error::last_os_error());
    i32::try_from(ret).expect("fds and zero fit in i32")
}

/// Does what agents before per-pod packet hooks did: a `cgroup_skb/egress` program named
/// `imds_egress` (one that lets everything through) linked to `cgroup_dir` as a whole, the
/// link pinned at `pin`. For tests of the upgrade from such an agent.
#[expect(
    unsafe_code,
    reason = "file descriptors returned by bpf(2) are adopted"
)]
pub fn pin_whole_cgroup_egress_link(cgroup_dir: &Path, pin: &Path) {
    use std::os::fd::{FromRawFd as _, OwnedFd};

    // r0 = 1 (let the packet through); exit.
    let program: [u64; 2] = [0x0000_0001_0000_00b7, 0x0000_0000_0000_0095];
    let license = c"GPL";
    let mut attr = [0u64; 20];
    attr[0] = u64::from(BPF_PROG_TYPE_CGROUP_SKB) | (2 << 32);
    attr[1] = program.as_ptr() as u64;
    attr[2] = license.as_ptr() as u64;
    let mut name = [0u8; 16];
    name[..11].copy_from_slice(b"imds_egress");
    attr[6] = u64::from_le_bytes(name[..8].try_into().expect("8 bytes"));
    attr[7] = u64::from_le_bytes(name[8..].try_into().expect("8 bytes"));
    // prog_ifindex 0, expected_attach_type BPF_CGROUP_INET_EGRESS (1).
    attr[8] = 1 << 32;
    // SAFETY: a new fd from the kernel, owned from here on.
    let program = unsafe { OwnedFd::from_raw_fd(bpf(BPF_PROG_LOAD, &mut attr, "BPF_PROG_LOAD")) };

    let cgroup = std::fs::File::open(cgroup_dir)
        .unwrap_or_else(|e| panic!("open {}: {e}", cgroup_dir.display()));
    let fd = |f: &dyn std::os::fd::AsRawFd| u64::try_from(f.as_raw_fd()).expect("non-negative");
    let mut attr = [0u64; 20];
    // prog_fd, target_fd; attach_type BPF_CGROUP_INET_EGRESS (1), flags 0.
    attr[0] = fd(&program) | (fd(&cgroup) << 32);
    attr[1] = 1;
    // SAFETY: as above.
    let link = unsafe { OwnedFd::from_raw_fd(bpf(BPF_LINK_CREATE, &mut attr, "BPF_LINK_CREATE")) };

    let path = std::ffi::CString::new(pin.as_os_str().as_encoded_bytes()).expect("no NUL");
    let mut attr = [0u64; 20];
    attr[0] = path.as_ptr() as u64;
    attr[1] = fd(&link);
    bpf(BPF_OBJ_PIN, &mut attr, "BPF_OBJ_PIN");
}

#[cfg(test)]
mod tests {
    use std::mem::offset_of;

    use super::*;

    #[test]
    fn query_attr_follows_the_kernel_layout() {
        assert_eq!(offset_of!(QueryAttr, target_fd), 0);
        assert_eq!(offset_of!(QueryAttr, attach_type), 4);
        assert_eq!(offset_of!(QueryAttr, query_flags), 8);
        assert_eq!(offset_of!(QueryAttr, attach_flags), 12);
        assert_eq!(offset_of!(QueryAttr, prog_ids), 16);
        assert_eq!(offset_of!(QueryAttr, prog_cnt), 24);
        assert_eq!(offset_of!(QueryAttr, padding), 28);
    }

    #[test]
    fn attach_types_are_the_kernels_numbers() {
        let numbers = [
            AttachType::InetEgress,
            AttachType::InetSockCreate,
            AttachType::Inet4Connect,
            AttachType::Inet6Connect,
            AttachType::Udp4Sendmsg,
            AttachType::Udp6Sendmsg,
        ]
        .map(AttachType::number);
        assert_eq!(numbers, [1, 2, 10, 11, 14, 15]);
    }
}
