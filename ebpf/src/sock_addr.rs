//! Socket calls that name a destination (`connect`, and `sendto`/`sendmsg` with an
//! address): read it from `bpf_sock_addr` and judge it with the current task as origin.

use aya_ebpf::{
    helpers::{
        bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_current_comm,
        bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
    },
    programs::SockAddrContext,
};
use nodeward_common::{AF_INET, AF_INET6, imds::ImdsEvent};

use crate::{
    egress,
    imds::{
        ALLOW, Destination, Origin, is_blocked_v4, is_blocked_v6, low_u32, on_blocked,
        port_from_ctx,
    },
};

/// `::ffff:0:0/96` marker word, as it sits in `user_ip6[2]` (network order).
const V4_MAPPED_MARKER: u32 = 0x0000_ffff_u32.to_be();

/// The task making the call.
pub struct Task;

impl Origin for Task {
    #[inline(always)]
    fn cgroup_id(&self) -> u64 {
        // SAFETY: a helper without arguments, allowed in cgroup sock_addr programs.
        unsafe { bpf_get_current_cgroup_id() }
    }

    #[inline(always)]
    fn ancestor_cgroup_id(&self, level: i32) -> u64 {
        // SAFETY: the helper accepts any level and returns 0 past the task's own.
        unsafe { bpf_get_current_ancestor_cgroup_id(level) }
    }

    #[inline(always)]
    fn describe(&self, event: &mut ImdsEvent) {
        event.pid = (bpf_get_current_pid_tgid() >> 32) as u32;
        event.uid = low_u32(bpf_get_current_uid_gid());
        event.comm = bpf_get_current_comm().unwrap_or_default();
    }
}

/// An IPv4 destination (`connect4`, `sendmsg4`).
#[inline(always)]
pub fn judge_v4(ctx: &SockAddrContext, hook: u32) -> i32 {
    judge(&destination_v4(ctx, hook))
}

/// An IPv6 destination (`connect6`, `sendmsg6`), including IPv4-mapped ones.
#[inline(always)]
pub fn judge_v6(ctx: &SockAddrContext, hook: u32) -> i32 {
    judge(&destination_v6(ctx, hook))
}

/// The destination an IPv4 call names.
#[inline(always)]
pub fn destination_v4(ctx: &SockAddrContext, hook: u32) -> Destination {
    // SAFETY: the kernel hands sock_addr programs a valid bpf_sock_addr.
    let sa = unsafe { &*ctx.sock_addr };
    ip4(
        sa.user_ip4.to_ne_bytes(),
        port_from_ctx(sa.user_port),
        sa.protocol,
        hook,
    )
}

/// The destination an IPv6 call names; an IPv4-mapped address comes back as IPv4.
#[inline(always)]
pub fn destination_v6(ctx: &SockAddrContext, hook: u32) -> Destination {
    // SAFETY: the kernel hands sock_addr programs a valid bpf_sock_addr.
    let sa = unsafe { &*ctx.sock_addr };
    // The context only allows aligned 32-bit loads of user_ip6 ("invalid bpf_context
    // access" otherwise), so read it word by word.
    let words = [
        sa.user_ip6[0],
        sa.user_ip6[1],
        sa.user_ip6[2],
        sa.user_ip6[3],
    ];
    let port = port_from_ctx(sa.user_port);

    // An AF_INET6 socket reaches IPv4 destinations through ::ffff:a.b.c.d; judge those by
    // the IPv4 prefixes or they would be a way around them.
    if words[0] == 0 && words[1] == 0 && words[2] == V4_MAPPED_MARKER {
        return ip4(words[3].to_ne_bytes(), port, sa.protocol, hook);
    }
    let mut addr = [0u8; 16];
    for (chunk, word) in addr.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    Destination {
        family: AF_INET6,
        addr,
        port,
        protocol: sa.protocol,
        hook,
    }
}

#[inline(always)]
fn ip4(ip: [u8; 4], port: u16, protocol: u32, hook: u32) -> Destination {
    let mut addr = [0u8; 16];
    addr[..4].copy_from_slice(&ip);
    Destination {
        family: AF_INET,
        addr,
        port,
        protocol,
        hook,
    }
}

/// The IMDS decision, then what goes through is what the egress sensor records.
#[inline(always)]
fn judge(dst: &Destination) -> i32 {
    let blocked = if dst.family == AF_INET {
        is_blocked_v4([dst.addr[0], dst.addr[1], dst.addr[2], dst.addr[3]])
    } else {
        is_blocked_v6(dst.addr)
    };
    let verdict = if blocked {
        on_blocked(&Task, dst)
    } else {
        ALLOW
    };
    if verdict == ALLOW {
        egress::record(dst);
    }
    verdict
}
