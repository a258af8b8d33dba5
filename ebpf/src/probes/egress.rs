use aya_ebpf::{macros::cgroup_skb, programs::SkBuffContext};

use crate::packet::judge;

// match-proto: struct __sk_buff { ...; __u32 protocol; ...; struct bpf_sock *sk; ... }
// (include/uapi/linux/bpf.h); the data starts at the IP header on cgroup egress.
#[cgroup_skb(egress)]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro fixes the signature"
)]
pub fn imds_egress(ctx: SkBuffContext) -> i32 {
    judge(&ctx)
}
