use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use nodeward_common::{AF_INET, AF_INET6, imds::HOOK_CONNECT6};

use crate::imds::{ALLOW, Destination, is_blocked_v4, is_blocked_v6, on_blocked, port_from_ctx};

/// `::ffff:0:0/96` marker word, as it sits in `user_ip6[2]` (network order).
const V4_MAPPED_MARKER: u32 = 0x0000_ffff_u32.to_be();

// match-proto: struct bpf_sock_addr { __u32 user_family; __u32 user_ip4;
//   __u32 user_ip6[4] /* network order */; __u32 user_port /* network order */; ...;
//   __u32 protocol; ... } (include/uapi/linux/bpf.h)
#[cgroup_sock_addr(connect6)]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro fixes the signature"
)]
pub fn imds_connect6(ctx: SockAddrContext) -> i32 {
    try_imds_connect6(&ctx)
}

#[inline(always)]
fn try_imds_connect6(ctx: &SockAddrContext) -> i32 {
    // SAFETY: the kernel hands connect6 programs a valid bpf_sock_addr.
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
        let ip = words[3].to_ne_bytes();
        if !is_blocked_v4(ip) {
            return ALLOW;
        }
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&ip);
        return on_blocked(&Destination {
            family: AF_INET,
            addr,
            port,
            protocol: sa.protocol,
            hook: HOOK_CONNECT6,
        });
    }

    let mut addr = [0u8; 16];
    for (chunk, word) in addr.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    if !is_blocked_v6(addr) {
        return ALLOW;
    }
    on_blocked(&Destination {
        family: AF_INET6,
        addr,
        port,
        protocol: sa.protocol,
        hook: HOOK_CONNECT6,
    })
}
