//! Record-only programs on the node's cgroup (`sensors.hostProcesses`): the destinations
//! node processes connect and send to. They always let the call through; IMDS decisions
//! are the pod programs' alone.

use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use nodeward_common::imds::{HOOK_CONNECT4, HOOK_CONNECT6, HOOK_SENDMSG4, HOOK_SENDMSG6};

use crate::{
    egress::record_from_node,
    imds::ALLOW,
    sock_addr::{destination_v4, destination_v6},
};

// match-proto: struct bpf_sock_addr (include/uapi/linux/bpf.h), as for the pod programs.
#[cgroup_sock_addr(connect4)]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro fixes the signature"
)]
pub fn host_connect4(ctx: SockAddrContext) -> i32 {
    record_from_node(&destination_v4(&ctx, HOOK_CONNECT4));
    ALLOW
}

#[cgroup_sock_addr(connect6)]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro fixes the signature"
)]
pub fn host_connect6(ctx: SockAddrContext) -> i32 {
    record_from_node(&destination_v6(&ctx, HOOK_CONNECT6));
    ALLOW
}

#[cgroup_sock_addr(sendmsg4)]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro fixes the signature"
)]
pub fn host_sendmsg4(ctx: SockAddrContext) -> i32 {
    record_from_node(&destination_v4(&ctx, HOOK_SENDMSG4));
    ALLOW
}

#[cgroup_sock_addr(sendmsg6)]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro fixes the signature"
)]
pub fn host_sendmsg6(ctx: SockAddrContext) -> i32 {
    record_from_node(&destination_v6(&ctx, HOOK_SENDMSG6));
    ALLOW
}
