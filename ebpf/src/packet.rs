//! Packets: what raw, ICMP and packet sockets send never passes through connect or
//! sendmsg with a destination, so the IP header is read here, on a pod's way out
//! (`cgroup_skb/egress`) and on the node's interfaces (tcx egress, see `uplink`).

use aya_ebpf::{
    bindings::__sk_buff,
    cty::c_long,
    helpers::{bpf_get_socket_uid, bpf_sk_fullsock, bpf_skb_ancestor_cgroup_id, bpf_skb_cgroup_id},
    programs::{SkBuffContext, TcContext},
};
use nodeward_common::{
    AF_INET, AF_INET6,
    imds::{HOOK_EGRESS, ImdsEvent},
};

use crate::imds::{
    ALLOW, Destination, Origin, is_blocked_v4, is_blocked_v6, may_be_blocked, on_blocked,
};

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

/// A packet as a program sees it: the bytes (from the IP header for cgroup programs, from
/// the link header for tc) and the kernel's `__sk_buff`.
pub trait Frame {
    fn load<T>(&self, offset: usize) -> Result<T, c_long>;
    fn skb(&self) -> *mut __sk_buff;
}

impl Frame for SkBuffContext {
    #[inline(always)]
    fn load<T>(&self, offset: usize) -> Result<T, c_long> {
        SkBuffContext::load(self, offset)
    }

    #[inline(always)]
    fn skb(&self) -> *mut __sk_buff {
        self.skb.skb
    }
}

impl Frame for TcContext {
    #[inline(always)]
    fn load<T>(&self, offset: usize) -> Result<T, c_long> {
        TcContext::load(self, offset)
    }

    #[inline(always)]
    fn skb(&self) -> *mut __sk_buff {
        self.skb.skb
    }
}

/// The socket a packet was sent from.
pub struct Packet<'a, F: Frame>(pub &'a F);

impl<F: Frame> Origin for Packet<'_, F> {
    #[inline(always)]
    fn cgroup_id(&self) -> u64 {
        // SAFETY: a valid skb pointer from the program context.
        unsafe { bpf_skb_cgroup_id(self.0.skb()) }
    }

    #[inline(always)]
    fn ancestor_cgroup_id(&self, level: i32) -> u64 {
        // SAFETY: as above; the helper returns 0 past the socket's own level.
        unsafe { bpf_skb_ancestor_cgroup_id(self.0.skb(), level) }
    }

    #[inline(always)]
    fn describe(&self, event: &mut ImdsEvent) {
        // SAFETY: as above. No pid or comm: egress may run in softirq context, where the
        // "current" task is whoever happened to be running.
        event.uid = unsafe { bpf_get_socket_uid(self.0.skb()) };
    }
}

/// Judges one packet leaving a pod's cgroup.
#[inline(always)]
pub fn judge(ctx: &SkBuffContext) -> i32 {
    // Nearly every packet goes somewhere no blocked prefix starts: one direct read of the
    // destination's first byte and a bit test let it pass, with no helper call.
    // SAFETY: the context's data pointers; cgroup skb programs see from the IP header on.
    let (data, end) = unsafe {
        (
            (*ctx.skb.skb).data as usize,
            (*ctx.skb.skb).data_end as usize,
        )
    };
    if !may_be_blocked_direct::<0>(data, end) {
        return ALLOW;
    }
    // TCP and UDP sockets were judged when they connected or sent (connect4/6, sendmsg4/6).
    // What is left is what no socket call names a destination for: raw and ICMP sockets.
    if from_tcp_or_udp_socket(ctx) {
        return ALLOW;
    }
    match blocked_destination(ctx, 0, HOOK_EGRESS) {
        Some(dst) => on_blocked(&Packet(ctx), &dst),
        None => ALLOW,
    }
}

/// The prefilter on the destination's first byte, read straight from the packet whose
/// IP header starts `L3` bytes into its data (no helper call). A packet too short to hold
/// an IPv6 destination's first byte (a 20-byte IPv4 header with under 5 bytes after it)
/// is left to the full check.
#[inline(always)]
pub fn may_be_blocked_direct<const L3: usize>(data: usize, end: usize) -> bool {
    // One check for every read below; the verifier needs it as `data + constant >
    // data_end` (a `+ 1` gets compiled into a form it does not take as a bound).
    if data + L3 + V6_DADDR + 1 > end {
        return true;
    }
    // SAFETY: every offset lies below the bound checked above.
    let (version, v4_first, v6_first) = unsafe {
        (
            *((data + L3) as *const u8) >> 4,
            *((data + L3 + V4_DADDR) as *const u8),
            *((data + L3 + V6_DADDR) as *const u8),
        )
    };
    match version {
        4 => may_be_blocked(false, v4_first),
        6 => may_be_blocked(true, v6_first),
        _ => true,
    }
}

/// The destination of the IP packet whose header starts at `l3`, if it is blocked.
#[inline(always)]
pub fn blocked_destination(frame: &impl Frame, l3: usize, hook: u32) -> Option<Destination> {
    let first = frame.load::<u8>(l3).ok()?;
    let (family, addr, protocol, l4) = match first >> 4 {
        4 => {
            let ip = frame.load::<[u8; 4]>(l3 + V4_DADDR).ok()?;
            if !is_blocked_v4(ip) {
                return None;
            }
            let mut addr = [0u8; 16];
            addr[..4].copy_from_slice(&ip);
            let protocol = frame.load::<u8>(l3 + V4_PROTOCOL).unwrap_or(0);
            (AF_INET, addr, protocol, l3 + usize::from(first & 0x0f) * 4)
        }
        6 => {
            let addr = frame.load::<[u8; 16]>(l3 + V6_DADDR).ok()?;
            if !is_blocked_v6(addr) {
                return None;
            }
            (
                AF_INET6,
                addr,
                frame.load::<u8>(l3 + V6_NEXT_HEADER).unwrap_or(0),
                l3 + V6_HEADER_LEN,
            )
        }
        _ => return None,
    };
    let port = if protocol == IPPROTO_TCP || protocol == IPPROTO_UDP {
        frame.load::<u16>(l4 + 2).map_or(0, u16::from_be)
    } else {
        0
    };
    Some(Destination {
        family,
        addr,
        port,
        protocol: u32::from(protocol),
        hook,
    })
}

/// Whether the packet's socket is a TCP or UDP one, whose calls the socket hooks judged.
#[inline(always)]
pub fn from_tcp_or_udp_socket(frame: &impl Frame) -> bool {
    // SAFETY: reading the context's socket pointer is allowed in cgroup skb and tc
    // programs; the kernel may hand a request or timewait socket, which bpf_sk_fullsock
    // turns into null.
    let sk = unsafe { (*frame.skb()).__bindgen_anon_2.sk };
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
    judged_at_socket_calls(kind, protocol)
}

/// Whether a socket of this type and protocol names its destinations in connect or
/// sendmsg, where the socket hooks judge them; the packet hook judges all others.
#[inline(always)]
pub fn judged_at_socket_calls(kind: u32, protocol: u32) -> bool {
    kind == SOCK_STREAM || (kind == SOCK_DGRAM && protocol == u32::from(IPPROTO_UDP))
}
