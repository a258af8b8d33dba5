//! The node's side of IMDS enforcement, on the interfaces that lead to a blocked prefix.
//! Every pod hook sits on a socket call or a socket's packets, and a frame written on a
//! packet socket has neither: from an ordinary pod it crosses the veth and the node
//! forwards it, socketless; from a hostNetwork pod it goes straight to the device. Both
//! leave through one of these interfaces, where this program judges them:
//! - a packet with a socket below the pod cgroup is a pod's (the allowlist by cgroup);
//! - a packet without a socket that entered on another interface was forwarded, and the
//!   interface it entered on says which pod's network namespace sent it (`IMDS_POD_LINKS`,
//!   kept by the agent); an interface no pod is known on gets no allowance;
//! - anything else is the node's own (its processes, and replies the kernel makes).

use aya_ebpf::{
    helpers::{bpf_skb_ancestor_cgroup_id, bpf_skb_cgroup_id},
    programs::TcContext,
};
use nodeward_common::imds::{HOOK_FORWARDED, HOOK_UPLINK, ImdsEvent, MODE_AUDIT};

use crate::{
    imds::{ALLOW, Origin, mode, on_blocked},
    maps::{IMDS_ALLOWED, IMDS_POD_LINKS, IMDS_UPLINK},
    packet::{Packet, blocked_destination, from_tcp_or_udp_socket, may_be_blocked_direct},
};

/// tcx verdicts (`enum tcx_action_base`): let the next program decide, or drop.
const TCX_NEXT: i32 = -1;
const TCX_DROP: i32 = 2;

/// Ethernet type codes, and where they sit in an Ethernet header (with one 802.1Q/802.1ad tag).
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_TYPE: usize = 12;
const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;

/// A packet forwarded out of a pod's network namespace: no socket, no task; the pod is
/// the one whose node-side interface the packet entered on, if the agent knows it.
struct Forwarded {
    /// The pod's cgroup id; 0 when no known pod is on the interface.
    pod_cgroup_id: u64,
    ifindex: u32,
}

impl Origin for Forwarded {
    #[inline(always)]
    fn cgroup_id(&self) -> u64 {
        self.pod_cgroup_id
    }

    #[inline(always)]
    fn ancestor_cgroup_id(&self, _level: i32) -> u64 {
        0
    }

    #[inline(always)]
    fn describe(&self, event: &mut ImdsEvent) {
        event.ifindex = self.ifindex;
    }

    #[inline(always)]
    fn is_allowed(&self) -> bool {
        self.pod_cgroup_id != 0 && IMDS_ALLOWED.get_ptr(self.pod_cgroup_id).is_some()
    }
}

/// Judges one packet leaving on a node interface.
#[inline(always)]
pub fn judge(ctx: &TcContext) -> i32 {
    // Everything the node sends passes here: most of it is told apart on one direct read.
    if !may_be_blocked_frame(ctx) {
        return TCX_NEXT;
    }
    let Some(l3) = ip_header_offset(ctx) else {
        return TCX_NEXT;
    };
    // The blocked tries first: everything else the node sends pays only this.
    let Some(mut dst) = blocked_destination(ctx, l3, HOOK_UPLINK) else {
        return TCX_NEXT;
    };
    let skb = ctx.skb.skb;
    // SAFETY: a valid skb pointer from the program context; 0 when it has no full socket.
    let socket_cgroup = unsafe { bpf_skb_cgroup_id(skb) };
    let verdict = if socket_cgroup != 0 {
        // TCP and UDP sockets were judged at connect and sendmsg; the node's own sockets
        // are not this program's business.
        if from_tcp_or_udp_socket(ctx) || !from_pod_socket(ctx) {
            return TCX_NEXT;
        }
        on_blocked(&Packet(ctx), &dst)
    } else {
        // SAFETY: as above; `ingress_ifindex` is readable by tc programs.
        let ifindex = unsafe { (*skb).ingress_ifindex };
        if ifindex == 0 {
            // Made by the node's kernel itself (a reset, an ICMP error), not forwarded.
            return TCX_NEXT;
        }
        // A pod's TCP and UDP packets come this way too, after its socket calls were
        // audited; reporting each packet again would only repeat those findings.
        if mode() == MODE_AUDIT {
            return TCX_NEXT;
        }
        let pod_cgroup_id = IMDS_POD_LINKS
            .get_ptr(ifindex)
            // SAFETY: a pointer into the map value from the lookup.
            .map_or(0, |id| unsafe { *id });
        dst.hook = HOOK_FORWARDED;
        on_blocked(
            &Forwarded {
                pod_cgroup_id,
                ifindex,
            },
            &dst,
        )
    };
    if verdict == ALLOW { TCX_NEXT } else { TCX_DROP }
}

/// Whether the packet's socket lies below the pod cgroup.
#[inline(always)]
fn from_pod_socket(ctx: &TcContext) -> bool {
    let Some(config) = IMDS_UPLINK.get(0) else {
        return false;
    };
    if config.pod_cgroup_id == 0 {
        return false;
    }
    let level = i32::try_from(config.pod_cgroup_level).unwrap_or(0);
    // SAFETY: a valid skb pointer; the helper returns 0 past the socket's own level.
    unsafe { bpf_skb_ancestor_cgroup_id(ctx.skb.skb, level) == config.pod_cgroup_id }
}

/// The prefilter on the destination's first byte of an untagged Ethernet frame, read
/// straight from the packet. Tagged, short or non-IP frames are left to the full check.
#[inline(always)]
fn may_be_blocked_frame(ctx: &TcContext) -> bool {
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + ETH_HLEN > end {
        return true;
    }
    // SAFETY: both bytes lie below the bound checked above.
    let ethertype = unsafe {
        u16::from_be_bytes([
            *((data + ETH_TYPE) as *const u8),
            *((data + ETH_TYPE + 1) as *const u8),
        ])
    };
    if ethertype != ETH_P_IP && ethertype != ETH_P_IPV6 {
        return true;
    }
    may_be_blocked_direct::<ETH_HLEN>(data, end)
}

/// Where the IP header starts in an Ethernet frame (untagged or with one VLAN tag), read
/// from the frame itself: a packet socket can set `skb->protocol` to anything.
#[inline(always)]
fn ip_header_offset(ctx: &TcContext) -> Option<usize> {
    let mut offset = ETH_HLEN;
    let mut ethertype = u16::from_be(ctx.load::<u16>(ETH_TYPE).ok()?);
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        ethertype = u16::from_be(ctx.load::<u16>(ETH_TYPE + VLAN_HLEN).ok()?);
        offset += VLAN_HLEN;
    }
    (ethertype == ETH_P_IP || ethertype == ETH_P_IPV6).then_some(offset)
}
