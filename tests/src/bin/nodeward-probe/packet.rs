//! `packet-send`: UDP datagrams written as whole IP packets on an `AF_PACKET` socket. The
//! sender's IP stack never sees them, so no cgroup connect, sendmsg or `cgroup_skb` hook
//! does either; only something on the node side of the link can stop them.

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use nix::ifaddrs::getifaddrs;
use nix::net::if_::if_nametoindex;
use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, socket};
use nodeward_testkit::ProbeResult;

use crate::packet6;
use crate::raw::checksum;

const IPV4_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;
const IPPROTO_UDP: u8 = 17;
/// The discard port: where the datagram that makes the kernel resolve the next hop goes.
const DISCARD_PORT: u16 = 9;
/// How long to wait for the kernel to resolve the next hop's MAC address.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);
/// `ATF_COM` in /proc/net/arp: the entry holds a resolved address.
const ATF_COM: u32 = 0x2;
/// `RTF_UP` in /proc/net/route.
const RTF_UP: u32 = 0x1;

#[derive(Args)]
pub struct PacketSendArgs {
    /// Destination address.
    #[arg(long)]
    addr: IpAddr,
    /// Destination UDP port.
    #[arg(long)]
    port: u16,
    /// How many datagrams to send.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    count: u32,
    /// The datagrams' payload.
    #[arg(long, default_value = "nodeward")]
    payload: String,
    /// Interface to send on; by default that of the route to `addr`.
    #[arg(long)]
    iface: Option<String>,
    /// Set `PACKET_QDISC_BYPASS`, so the frames skip the interface's qdiscs (and tc egress).
    #[arg(long)]
    qdisc_bypass: bool,
}

impl PacketSendArgs {
    /// Errors of the socket calls keep their OS error, so a denial reads as `EPERM`; those
    /// of finding the route, address and next hop say what is missing.
    pub fn run(self) -> io::Result<ProbeResult> {
        let source_port = 40_000 + u16::try_from(std::process::id() % 20_000).unwrap_or(0);
        let no_route = || io::Error::other(format!("no route to {}", self.addr));
        let (iface, mac, ethertype, packets) = match self.addr {
            IpAddr::V4(addr) => {
                let routes = fs::read_to_string("/proc/net/route")?;
                let (iface, next_hop) =
                    next_hop(&routes, addr, self.iface.as_deref()).ok_or_else(no_route)?;
                let source = ipv4_of(&iface)?;
                let mac = resolve(next_hop.into(), &iface, || {
                    arp_entry(&fs::read_to_string("/proc/net/arp").ok()?, next_hop, &iface)
                })?;
                let packets = (0..self.count)
                    .map(|i| {
                        udp_packet(
                            (source, source_port),
                            (addr, self.port),
                            u16::try_from(i & 0xffff).unwrap_or(0),
                            self.payload.as_bytes(),
                        )
                    })
                    .collect::<io::Result<Vec<_>>>()?;
                (iface, mac, libc::ETH_P_IP, packets)
            }
            IpAddr::V6(addr) => self.ipv6(addr, source_port)?,
        };
        let ifindex = if_nametoindex(iface.as_str())
            .map_err(|e| io::Error::other(format!("no interface {iface}: {e}")))?;
        let fd = socket(
            AddressFamily::Packet,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::EthIp,
        )
        .map_err(io::Error::from)?;
        if self.qdisc_bypass {
            set_qdisc_bypass(&fd)?;
        }
        for packet in &packets {
            send_frame(&fd, ifindex, mac, ethertype, packet)?;
        }
        Ok(ProbeResult {
            ops: Some(u64::from(self.count)),
            ..ProbeResult::success()
        })
    }
}

impl PacketSendArgs {
    /// The interface, next hop MAC, Ethernet type and packets for an IPv6 destination.
    fn ipv6(&self, addr: Ipv6Addr, source_port: u16) -> io::Result<Frames> {
        let (iface, next_hop) = packet6::next_hop(&packet6::routes()?, addr, self.iface.as_deref())
            .ok_or_else(|| io::Error::other(format!("no route to {addr}")))?;
        let source = packet6::address_of(&iface)?;
        let mac = resolve(next_hop.into(), &iface, || {
            packet6::neighbour(next_hop, &iface)
        })?;
        let packets = (0..self.count)
            .map(|_| {
                packet6::udp_packet(
                    (source, source_port),
                    (addr, self.port),
                    self.payload.as_bytes(),
                )
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok((iface, mac, libc::ETH_P_IPV6, packets))
    }
}

/// Where and what to send: interface, next hop MAC, Ethernet type, packets.
type Frames = (String, [u8; 6], libc::c_int, Vec<Vec<u8>>);

/// The interface and next hop of the most specific up route to `addr` in /proc/net/route
/// (the main table of the caller's network namespace): its gateway, or `addr` on-link.
/// With `iface`, only that interface's routes count, and `addr` is on-link if none match.
fn next_hop(routes: &str, addr: Ipv4Addr, iface: Option<&str>) -> Option<(String, Ipv4Addr)> {
    let target = u32::from_ne_bytes(addr.octets());
    let best = routes
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let hex = |i: usize| u32::from_str_radix(f.get(i)?, 16).ok();
            let (dest, gateway, flags, metric, mask) =
                (hex(1)?, hex(2)?, hex(3)?, hex(6)?, hex(7)?);
            let on_iface = iface.is_none_or(|name| name == f[0]);
            (flags & RTF_UP != 0 && on_iface && target & mask == dest)
                .then(|| (f[0].to_owned(), gateway, mask.count_ones(), metric))
        })
        .min_by_key(|&(_, _, prefix, metric)| (std::cmp::Reverse(prefix), metric));
    match best {
        Some((name, 0, ..)) => Some((name, addr)),
        Some((name, gateway, ..)) => Some((name, Ipv4Addr::from(gateway.to_ne_bytes()))),
        None => iface.map(|name| (name.to_owned(), addr)),
    }
}

/// The first IPv4 address of `iface`.
fn ipv4_of(iface: &str) -> io::Result<Ipv4Addr> {
    getifaddrs()
        .map_err(|e| io::Error::other(format!("getifaddrs: {e}")))?
        .filter(|a| a.interface_name == iface)
        .find_map(|a| Some(a.address?.as_sockaddr_in()?.ip()))
        .ok_or_else(|| io::Error::other(format!("no IPv4 address on {iface}")))
}

/// The MAC address of `next_hop` on `iface`, as `lookup` finds it in the neighbour table.
/// If it is not there, one ordinary datagram to the discard port makes the kernel resolve
/// it (ARP or neighbour discovery).
fn resolve(
    next_hop: IpAddr,
    iface: &str,
    lookup: impl Fn() -> Option<[u8; 6]>,
) -> io::Result<[u8; 6]> {
    if let Some(mac) = lookup() {
        return Ok(mac);
    }
    // A failure here (a denying hook, an ICMP error) shows as the missing entry below.
    let unspecified: IpAddr = match next_hop {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    if let Ok(socket) = UdpSocket::bind((unspecified, 0)) {
        let _ = socket.send_to(b"", (next_hop, DISCARD_PORT));
    }
    let deadline = Instant::now() + RESOLVE_TIMEOUT;
    loop {
        if let Some(mac) = lookup() {
            return Ok(mac);
        }
        if Instant::now() >= deadline {
            return Err(io::Error::other(format!(
                "no neighbour entry for next hop {next_hop} on {iface}"
            )));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The resolved MAC address of `ip` on `iface` in /proc/net/arp, whose lines read
/// `IP address  HW type  Flags  HW address  Mask  Device`.
fn arp_entry(table: &str, ip: Ipv4Addr, iface: &str) -> Option<[u8; 6]> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let flags = u32::from_str_radix(f.get(2)?.trim_start_matches("0x"), 16).ok()?;
        if f[0].parse() != Ok(ip) || f.get(5) != Some(&iface) || flags & ATF_COM == 0 {
            return None;
        }
        let mut mac = [0u8; 6];
        let mut parts = f.get(3)?.split(':');
        for byte in &mut mac {
            *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
        }
        (parts.next().is_none() && mac != [0; 6]).then_some(mac)
    })
}

/// An IPv4 header (no options, TTL 64) and a UDP header with its checksum, then `payload`.
fn udp_packet(
    (source, source_port): (Ipv4Addr, u16),
    (dest, dest_port): (Ipv4Addr, u16),
    id: u16,
    payload: &[u8],
) -> io::Result<Vec<u8>> {
    let too_long = || io::Error::new(io::ErrorKind::InvalidInput, "payload too long");
    let udp_len = u16::try_from(UDP_HEADER_LEN + payload.len()).map_err(|_| too_long())?;
    let total_len = udp_len
        .checked_add(u16::try_from(IPV4_HEADER_LEN).unwrap_or(u16::MAX))
        .ok_or_else(too_long)?;
    let mut packet = Vec::with_capacity(usize::from(total_len));
    packet.extend_from_slice(&[0x45, 0]);
    packet.extend_from_slice(&total_len.to_be_bytes());
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0, 0, 64, IPPROTO_UDP, 0, 0]);
    packet.extend_from_slice(&source.octets());
    packet.extend_from_slice(&dest.octets());
    let header_sum = checksum(&packet);
    packet[10..12].copy_from_slice(&header_sum.to_be_bytes());

    packet.extend_from_slice(&source_port.to_be_bytes());
    packet.extend_from_slice(&dest_port.to_be_bytes());
    packet.extend_from_slice(&udp_len.to_be_bytes());
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(payload);
    // The UDP checksum covers a pseudo-header: addresses, protocol and UDP length.
    let mut pseudo = Vec::with_capacity(12 + usize::from(udp_len));
    pseudo.extend_from_slice(&packet[12..20]);
    pseudo.extend_from_slice(&[0, IPPROTO_UDP]);
    pseudo.extend_from_slice(&udp_len.to_be_bytes());
    pseudo.extend_from_slice(&packet[IPV4_HEADER_LEN..]);
    // 0 means "no checksum" in IPv4 UDP; a computed 0 is sent as all ones (RFC 768).
    let udp_sum = match checksum(&pseudo) {
        0 => 0xffff,
        sum => sum,
    };
    packet[IPV4_HEADER_LEN + 6..IPV4_HEADER_LEN + 8].copy_from_slice(&udp_sum.to_be_bytes());
    Ok(packet)
}

#[expect(
    clippy::cast_possible_truncation,
    reason = "the size of a c_int fits a socklen_t"
)]
fn set_qdisc_bypass(fd: &OwnedFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: `on` outlives the call and the length is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            (&raw const on).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// sendto(2) of one IP packet; the kernel adds the Ethernet header addressed to `mac`.
#[expect(
    clippy::cast_possible_truncation,
    reason = "AF_PACKET, ETH_P_IP and the size of a sockaddr_ll are small constants"
)]
fn send_frame(
    fd: &OwnedFd,
    ifindex: u32,
    mac: [u8; 6],
    ethertype: libc::c_int,
    packet: &[u8],
) -> io::Result<()> {
    // SAFETY: an all-zero sockaddr_ll is valid; the fields that matter are set below.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as libc::c_ushort;
    to.sll_protocol = u16::try_from(ethertype).map_err(io::Error::other)?.to_be();
    to.sll_ifindex = libc::c_int::try_from(ifindex).map_err(io::Error::other)?;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&mac);
    // SAFETY: `packet` and `to` outlive the call and the lengths are theirs.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            packet.as_ptr().cast(),
            packet.len(),
            0,
            (&raw const to).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    match usize::try_from(sent) {
        Ok(n) if n == packet.len() => Ok(()),
        Ok(n) => Err(io::Error::other(format!(
            "sent {n} of {} bytes",
            packet.len()
        ))),
        Err(_) => Err(io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0101C80A\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t0001C80A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
imds0\tFEA9FEA9\t0200FE0A\t0003\t0\t0\t0\tFFFFFFFF\t0\t0\t0
";

    #[test]
    fn picks_the_most_specific_route() {
        let imds = Ipv4Addr::new(169, 254, 169, 254);
        let hop = |addr, iface| next_hop(ROUTES, addr, iface);
        assert_eq!(
            hop(imds, None),
            Some(("imds0".into(), Ipv4Addr::new(10, 254, 0, 2)))
        );
        assert_eq!(
            hop(Ipv4Addr::new(8, 8, 8, 8), None),
            Some(("eth0".into(), Ipv4Addr::new(10, 200, 1, 1)))
        );
        let neighbour = Ipv4Addr::new(10, 200, 1, 7);
        assert_eq!(hop(neighbour, None), Some(("eth0".into(), neighbour)));
        assert_eq!(
            hop(imds, Some("eth0")),
            Some(("eth0".into(), Ipv4Addr::new(10, 200, 1, 1)))
        );
        assert_eq!(hop(imds, Some("veth9")), Some(("veth9".into(), imds)));
        let no_default = "Iface Destination Gateway Flags RefCnt Use Metric Mask\n\
                          eth0 0001C80A 00000000 0001 0 0 0 00FFFFFF\n";
        assert_eq!(next_hop(no_default, imds, None), None);
    }

    #[test]
    fn reads_resolved_arp_entries_only() {
        let table = "\
IP address       HW type     Flags       HW address            Mask     Device
10.200.1.1       0x1         0x2         0a:1b:2c:3d:4e:5f     *        eth0
10.200.1.9       0x1         0x0         00:00:00:00:00:00     *        eth0
";
        let gateway = Ipv4Addr::new(10, 200, 1, 1);
        assert_eq!(
            arp_entry(table, gateway, "eth0"),
            Some([0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f])
        );
        assert_eq!(arp_entry(table, gateway, "eth1"), None, "other device");
        assert_eq!(arp_entry(table, Ipv4Addr::new(10, 200, 1, 9), "eth0"), None);
    }

    #[test]
    fn builds_a_checksummed_ipv4_udp_packet() {
        let source = Ipv4Addr::new(10, 200, 1, 2);
        let dest = Ipv4Addr::new(169, 254, 169, 254);
        let packet = udp_packet((source, 40_001), (dest, 80), 7, b"nodeward").unwrap();
        assert_eq!(packet.len(), 20 + 8 + 8);
        assert_eq!(packet[..4], [0x45, 0, 0, 36], "version, IHL, total length");
        assert_eq!(packet[4..6], [0, 7], "identification");
        assert_eq!((packet[8], packet[9]), (64, 17), "TTL, protocol");
        assert_eq!(packet[12..16], source.octets());
        assert_eq!(packet[16..20], dest.octets());
        assert_eq!(
            checksum(&packet[..20]),
            0,
            "a valid header sums to all ones"
        );
        assert_ne!(packet[10..12], [0, 0]);
        assert_eq!(
            packet[20..26],
            [0x9c, 0x41, 0, 80, 0, 16],
            "ports, UDP length"
        );
        assert_eq!(&packet[28..], b"nodeward");

        let mut pseudo = packet[12..20].to_vec();
        pseudo.extend_from_slice(&[0, 17, 0, 16]);
        pseudo.extend_from_slice(&packet[20..]);
        assert_eq!(checksum(&pseudo), 0, "the UDP checksum verifies");
    }

    #[test]
    fn checksum_matches_a_known_header() {
        // The example header from Wikipedia's "IPv4 header checksum", checksum 0xb861.
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&header), 0xb861);
    }
}
