//! The IMDS decision shared by the connect hooks: look the destination up in the blocked
//! tries (the one lookup every connection pays), and only on a match read the mode,
//! report, and choose the verdict.

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_uid_gid, bpf_ktime_get_boot_ns,
    },
    maps::lpm_trie::Key,
};
use nodeward_common::imds::{
    ImdsEvent, MODE_AUDIT, MODE_OFF, STAT_AUDITED, STAT_BLOCKED, STAT_EVENTS_LOST, VERDICT_AUDITED,
    VERDICT_BLOCKED,
};

use crate::maps::{IMDS_BLOCKED_V4, IMDS_BLOCKED_V6, IMDS_CONFIG, IMDS_EVENTS, IMDS_STATS, bump};

/// Return value of a cgroup `sock_addr` program that lets the call proceed.
pub const ALLOW: i32 = 1;
/// Return value that makes the syscall fail with `EPERM`.
pub const DENY: i32 = 0;

/// A destination as the hooks read it from `bpf_sock_addr`.
pub struct Destination {
    pub family: u32,
    /// Network byte order; IPv4 in the first four bytes.
    pub addr: [u8; 16],
    /// Host byte order.
    pub port: u16,
    pub protocol: u32,
    pub hook: u32,
}

/// `bpf_sock_addr::user_port` holds the port in network byte order in its low 16 bits.
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "the upper 16 bits are always zero"
)]
pub fn port_from_ctx(user_port: u32) -> u16 {
    u16::from_be(user_port as u16)
}

/// The low half of a helper result that packs two 32-bit values (uid and gid).
#[inline(always)]
#[expect(clippy::cast_possible_truncation, reason = "truncation is the point")]
fn low_u32(packed: u64) -> u32 {
    packed as u32
}

#[inline(always)]
pub fn is_blocked_v4(addr: [u8; 4]) -> bool {
    IMDS_BLOCKED_V4.get(Key::new(32, addr)).is_some()
}

#[inline(always)]
pub fn is_blocked_v6(addr: [u8; 16]) -> bool {
    IMDS_BLOCKED_V6.get(Key::new(128, addr)).is_some()
}

/// Decides a connection whose destination matched a blocked prefix.
#[inline(always)]
pub fn on_blocked(dst: &Destination) -> i32 {
    // A missing config entry cannot happen for an array map, but if it did, enforcing is
    // the safe reading (MODE_ENFORCE is zero for the same reason).
    let mode = IMDS_CONFIG.get(0).map_or(0, |c| c.mode);
    if mode == MODE_OFF {
        return ALLOW;
    }
    let (verdict, stat, ret) = if mode == MODE_AUDIT {
        (VERDICT_AUDITED, STAT_AUDITED, ALLOW)
    } else {
        (VERDICT_BLOCKED, STAT_BLOCKED, DENY)
    };
    bump(&IMDS_STATS, stat);
    report(dst, verdict);
    ret
}

#[inline(always)]
fn report(dst: &Destination, verdict: u32) {
    let Some(mut entry) = IMDS_EVENTS.reserve::<ImdsEvent>(0) else {
        bump(&IMDS_STATS, STAT_EVENTS_LOST);
        return;
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    // SAFETY: helpers without arguments, allowed in cgroup sock_addr programs.
    let (cgroup_id, boot_ns) = unsafe { (bpf_get_current_cgroup_id(), bpf_ktime_get_boot_ns()) };
    entry.write(ImdsEvent {
        cgroup_id,
        boot_ns,
        pid: (pid_tgid >> 32) as u32,
        uid: low_u32(uid_gid),
        family: dst.family,
        protocol: dst.protocol,
        port: u32::from(dst.port),
        verdict,
        hook: dst.hook,
        reserved: 0,
        addr: dst.addr,
        comm: bpf_get_current_comm().unwrap_or_default(),
    });
    entry.submit(0);
}
