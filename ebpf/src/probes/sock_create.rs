use aya_ebpf::{macros::cgroup_sock, programs::SockContext};

use crate::{imds::ALLOW, packet_guard::on_create};

// match-proto: struct bpf_sock { ...; __u32 type; __u32 protocol; ... }
// (include/uapi/linux/bpf.h); runs in inet_create/inet6_create, after the protocol is
// resolved, with the creating task current.
#[cgroup_sock(sock_create)]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro fixes the signature"
)]
pub fn imds_sock_create(ctx: SockContext) -> i32 {
    on_create(&ctx);
    ALLOW
}
