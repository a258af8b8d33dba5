//! The few bpf(2) commands aya 0.14 does not expose for links: opening a pinned link,
//! replacing its program in place, reading which cgroup or interface it is attached to,
//! detaching it, and creating a tcx link from a thread in another network namespace (aya
//! resolves interface names in the caller's). The attribute layouts come from aya-obj's generated kernel bindings.

use std::{
    ffi::CString,
    io,
    os::fd::{AsFd, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
    path::Path,
};

use aya_obj::generated::{BPF_F_BEFORE, bpf_attach_type, bpf_attr, bpf_cmd, bpf_link_info};

/// A cgroup link as the kernel describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupLinkInfo {
    pub id: u32,
    pub program_id: u32,
    /// 0 when the cgroup is gone (the link is defunct).
    pub cgroup_id: u64,
}

fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<i64> {
    // SAFETY: `attr` is a valid, zero-initialised-then-filled bpf_attr of the size passed;
    // the kernel reads (and for some commands writes) only within it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            std::ptr::from_mut(attr),
            size_of::<bpf_attr>(),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn zeroed() -> bpf_attr {
    // SAFETY: bpf_attr is a plain C union of integers; all-zero is its documented default.
    unsafe { std::mem::zeroed() }
}

/// `BPF_OBJ_GET`: opens a pinned object. `NotFound` when nothing is pinned there.
pub fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let path = c_path(path)?;
    let mut attr = zeroed();
    attr.__bindgen_anon_4.pathname = path.as_ptr() as u64;
    let fd = bpf(bpf_cmd::BPF_OBJ_GET, &mut attr)?;
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("fd out of range"))?;
    // SAFETY: the kernel just returned this new file descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `BPF_OBJ_PIN`: pins the object behind `fd` at `path` on a bpffs.
pub fn obj_pin(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let path = c_path(path)?;
    let mut attr = zeroed();
    attr.__bindgen_anon_4.pathname = path.as_ptr() as u64;
    attr.__bindgen_anon_4.bpf_fd = raw(fd);
    bpf(bpf_cmd::BPF_OBJ_PIN, &mut attr).map(drop)
}

/// `BPF_LINK_UPDATE`: swaps the link's program for `program` atomically; the hook is
/// never without a program.
pub fn link_update(link: BorrowedFd<'_>, program: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = zeroed();
    attr.link_update.link_fd = raw(link);
    attr.link_update.__bindgen_anon_1.new_prog_fd = raw(program);
    bpf(bpf_cmd::BPF_LINK_UPDATE, &mut attr).map(drop)
}

/// `BPF_LINK_DETACH`: detaches the link now, even if other processes hold it open.
pub fn link_detach(link: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = zeroed();
    attr.link_detach.link_fd = raw(link);
    bpf(bpf_cmd::BPF_LINK_DETACH, &mut attr).map(drop)
}

/// `BPF_OBJ_GET_INFO_BY_FD` on a cgroup link.
pub fn cgroup_link_info(link: impl AsFd) -> io::Result<CgroupLinkInfo> {
    let info = link_info(link.as_fd())?;
    // SAFETY: for cgroup links the kernel fills the `cgroup` member of the union.
    let cgroup_id = unsafe { info.__bindgen_anon_1.cgroup.cgroup_id };
    Ok(CgroupLinkInfo {
        id: info.id,
        program_id: info.prog_id,
        cgroup_id,
    })
}

/// `BPF_LINK_CREATE` of a tcx egress link on interface `ifindex` of the calling thread's
/// network namespace, ahead of every program already there: a program before it that
/// ends the chain (`TCX_PASS`) must not let a packet skip it.
pub fn tcx_egress_link(program: BorrowedFd<'_>, ifindex: u32) -> io::Result<OwnedFd> {
    let mut attr = zeroed();
    attr.link_create.__bindgen_anon_1.prog_fd = raw(program);
    attr.link_create.__bindgen_anon_2.target_ifindex = ifindex;
    attr.link_create.attach_type = bpf_attach_type::BPF_TCX_EGRESS as u32;
    attr.link_create.flags = BPF_F_BEFORE;
    let fd = bpf(bpf_cmd::BPF_LINK_CREATE, &mut attr)?;
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("fd out of range"))?;
    // SAFETY: the kernel just returned this new file descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `BPF_LINK_CREATE` of a cgroup link. The kernel refuses attach flags on cgroup links
/// (kernel/bpf/cgroup.c, `cgroup_bpf_link_attach`); without them the link joins the
/// cgroup's program list in multi mode.
pub fn cgroup_link(
    program: BorrowedFd<'_>,
    cgroup: BorrowedFd<'_>,
    attach_type: bpf_attach_type,
) -> io::Result<OwnedFd> {
    let mut attr = zeroed();
    attr.link_create.__bindgen_anon_1.prog_fd = raw(program);
    attr.link_create.__bindgen_anon_2.target_fd = raw(cgroup);
    attr.link_create.attach_type = attach_type as u32;
    let fd = bpf(bpf_cmd::BPF_LINK_CREATE, &mut attr)?;
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("fd out of range"))?;
    // SAFETY: the kernel just returned this new file descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The interface a tcx link is on; 0 once the interface is gone (the link is defunct).
pub fn tcx_link_ifindex(link: impl AsFd) -> io::Result<u32> {
    let info = link_info(link.as_fd())?;
    // SAFETY: for tcx links the kernel fills the `tcx` member of the union.
    Ok(unsafe { info.__bindgen_anon_1.tcx.ifindex })
}

fn link_info(link: BorrowedFd<'_>) -> io::Result<bpf_link_info> {
    // SAFETY: bpf_link_info is a plain C struct of integers and unions of integers.
    let mut info: bpf_link_info = unsafe { std::mem::zeroed() };
    let mut attr = zeroed();
    attr.info.bpf_fd = raw(link);
    attr.info.info_len = u32::try_from(size_of::<bpf_link_info>()).expect("small struct");
    attr.info.info = std::ptr::from_mut(&mut info) as u64;
    bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info)
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pin path contains a NUL byte"))
}

fn raw(fd: BorrowedFd<'_>) -> u32 {
    u32::try_from(fd.as_raw_fd()).expect("file descriptors are non-negative")
}
