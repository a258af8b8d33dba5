use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use nodeward_common::imds::HOOK_CONNECT6;

use crate::sock_addr::judge_v6;

// match-proto: struct bpf_sock_addr { __u32 user_family; __u32 user_ip4;
//   __u32 user_ip6[4] /* network order */; __u32 user_port /* network order */; ...;
//   __u32 protocol; ... } (include/uapi/linux/bpf.h)
#[cgroup_sock_addr(connect6)]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro fixes the signature"
)]
pub fn imds_connect6(ctx: SockAddrContext) -> i32 {
    judge_v6(&ctx, HOOK_CONNECT6)
}
