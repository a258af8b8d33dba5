use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use nodeward_common::{AF_INET, imds::HOOK_CONNECT4};

use crate::imds::{ALLOW, Destination, is_blocked_v4, on_blocked, port_from_ctx};

// match-proto: struct bpf_sock_addr { __u32 user_family; __u32 user_ip4 /* network order */;
//   __u32 user_ip6[4]; __u32 user_port /* network order */; __u32 family; __u32 type;
//   __u32 protocol; ... } (include/uapi/linux/bpf.h)
#[cgroup_sock_addr(connect4)]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro fixes the signature"
)]
pub fn imds_connect4(ctx: SockAddrContext) -> i32 {
    try_imds_connect4(&ctx)
}

#[inline(always)]
fn try_imds_connect4(ctx: &SockAddrContext) -> i32 {
    // SAFETY: the kernel hands connect4 programs a valid bpf_sock_addr.
    let sa = unsafe { &*ctx.sock_addr };
    let ip = sa.user_ip4.to_ne_bytes();
    if !is_blocked_v4(ip) {
        return ALLOW;
    }
    let mut addr = [0u8; 16];
    addr[..4].copy_from_slice(&ip);
    on_blocked(&Destination {
        family: AF_INET,
        addr,
        port: port_from_ctx(sa.user_port),
        protocol: sa.protocol,
        hook: HOOK_CONNECT4,
    })
}
