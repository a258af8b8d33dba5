use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use nodeward_common::imds::HOOK_SENDMSG4;

use crate::sock_addr::judge_v4;

// match-proto: struct bpf_sock_addr (as for connect4); runs for UDP sendto(2), sendmsg(2)
// and each message of sendmmsg(2) that carries a destination address.
#[cgroup_sock_addr(sendmsg4)]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro fixes the signature"
)]
pub fn imds_sendmsg4(ctx: SockAddrContext) -> i32 {
    judge_v4(&ctx, HOOK_SENDMSG4)
}
