//! Packets leaving a pod: what raw and ICMP sockets send never passes through connect or
//! sendmsg with a destination, so the IP header is read here.

use aya_ebpf::{
    helpers::{bpf_get_socket_uid, bpf_sk_fullsock, bpf_skb_ancestor_cgroup_id, bpf_skb_cgroup_id},
    programs::SkBuffContext,
};
use nodeward_common::{
    AF_INET, AF_INET6,
    imds::{HOOK_EGRESS, ImdsEvent},
};

use crate::imds::{ALLOW, Destination, Origin, is_blocked_v4, is_blocked_v6, on_blocked};

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const SOCK_STREAM: u32 = 1;
const SOCK_DGRAM: u32 = 2;
/// Offsets in the IPv4 header (RFC 791).
const V4_PROTOCOL: usize = 9;
const V4_DADDR: usize = 16;
/// Offsets in the IPv6 header (RFC 8200); extension headers are not walked, so a port
/// behind one reads as 0 (the address, which decides, is in the fixed header).
const V6_NEXT_HEADER: usize = 6;
const V6_DADDR: usize = 24;
const V6_HEADER_LEN: usize = 40;

/// The socket a packet was sent from.
pub struct Packet<'a>(pub &'a SkBuffContext);

impl Origin for Packet<'_> {
    #[inline(always)]
    fn cgroup_id(&self) -> u64 {
        // SAFETY: a valid skb pointer from the program context.
        unsafe { bpf_skb_cgroup_id(self.0.skb.skb) }
    }

    #[inline(always)]
    fn ancestor_cgroup_id(&self, level: i32) -> u64 {
        // SAFETY: as above; the helper returns 0 past the socket's own level.
        unsafe { bpf_skb_ancestor_cgroup_id(self.0.skb.skb, level) }
    }

    #[inline(always)]
    fn describe(&self, event: &mut ImdsEvent) {
        // SAFETY: as above. No pid or comm: egress may run in softirq context, where the
        // "current" task is whoever happened to be running.
        event.uid = unsafe { bpf_get_socket_uid(self.0.skb.skb) };
    }
}

/// Judges one outgoing packet.
#[inline(always)]
pub fn judge(ctx: &SkBuffContext) -> i32 {
    // TCP and UDP sockets were judged when they connected or sent (connect4/6, sendmsg4/6);
    // their packets pass on one socket-type check, so the common path pays no header read
    // and no lookup here. What is left is what no socket call names a destination for:
    // raw and ICMP sockets.
    if from_tcp_or_udp_socket(ctx) {
        return ALLOW;
    }
    let Ok(first) = ctx.load::<u8>(0) else {
        return ALLOW;
    };
    let (family, addr, protocol, l4) = match first >> 4 {
        4 => {
            let Ok(ip) = ctx.load::<[u8; 4]>(V4_DADDR) else {
                return ALLOW;
            };
            if !is_blocked_v4(ip) {
                return ALLOW;
            }
            let mut addr = [0u8; 16];
            addr[..4].copy_from_slice(&ip);
            let protocol = ctx.load::<u8>(V4_PROTOCOL).unwrap_or(0);
            (AF_INET, addr, protocol, usize::from(first & 0x0f) * 4)
        }
        6 => {
            let Ok(addr) = ctx.load::<[u8; 16]>(V6_DADDR) else {
                return ALLOW;
            };
            if !is_blocked_v6(addr) {
                return ALLOW;
            }
            (
                AF_INET6,
                addr,
                ctx.load::<u8>(V6_NEXT_HEADER).unwrap_or(0),
                V6_HEADER_LEN,
            )
        }
        _ => return ALLOW,
    };
    let port = if protocol == IPPROTO_TCP || protocol == IPPROTO_UDP {
        ctx.load::<u16>(l4 + 2).map_or(0, u16::from_be)
    } else {
        0
    };
    on_blocked(
        &Packet(ctx),
        &Destination {
            family,
            addr,
            port,
            protocol: u32::from(protocol),
            hook: HOOK_EGRESS,
        },
    )
}

#[inline(always)]
fn from_tcp_or_udp_socket(ctx: &SkBuffContext) -> bool {
    // SAFETY: reading the context's socket pointer is allowed in cgroup skb programs; the
    // kernel may hand a request or timewait socket, which bpf_sk_fullsock turns into null.
    let sk = unsafe { (*ctx.skb.skb).__bindgen_anon_2.sk };
    if sk.is_null() {
        return false;
    }
    // SAFETY: a non-null socket pointer from the context.
    let full = unsafe { bpf_sk_fullsock(sk) };
    if full.is_null() {
        return false;
    }
    // SAFETY: a full socket returned by the helper.
    let (kind, protocol) = unsafe { ((*full).type_, (*full).protocol) };
    kind == SOCK_STREAM || (kind == SOCK_DGRAM && protocol == u32::from(IPPROTO_UDP))
}
