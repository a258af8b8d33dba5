use aya_ebpf::{macros::classifier, programs::TcContext};

use crate::uplink::judge;

// match-proto: struct __sk_buff { ...; __u32 ingress_ifindex; ...; struct bpf_sock *sk; ... }
// (include/uapi/linux/bpf.h); tcx egress, so the data starts at the link-layer header.
#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro fixes the signature"
)]
pub fn imds_uplink(ctx: TcContext) -> i32 {
    judge(&ctx)
}
