use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use nodeward_common::imds::HOOK_SENDMSG6;

use crate::sock_addr::judge_v6;

// match-proto: struct bpf_sock_addr (as for connect6); runs for UDP sends with an IPv6 (or
// IPv4-mapped) destination address.
#[cgroup_sock_addr(sendmsg6)]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro fixes the signature"
)]
pub fn imds_sendmsg6(ctx: SockAddrContext) -> i32 {
    judge_v6(&ctx, HOOK_SENDMSG6)
}
