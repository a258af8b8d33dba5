//! The IPv6 half of `packet-send`: the route from `/proc/net/ipv6_route`, the next hop's MAC
//! from the neighbour table (`ip -6 neigh`, as /proc has none for IPv6), and the packet.

use std::fs;
use std::io;
use std::net::Ipv6Addr;
use std::process::Command;

use nix::ifaddrs::getifaddrs;

use crate::raw::checksum;

const IPV6_HEADER_LEN: usize = 40;
const UDP_HEADER_LEN: usize = 8;
const IPPROTO_UDP: u8 = 17;
/// `RTF_UP` and `RTF_REJECT` in `/proc/net/ipv6_route`.
const RTF_UP: u32 = 0x1;
const RTF_REJECT: u32 = 0x200;

/// The interface and next hop of the most specific usable route to `addr` (its gateway,
/// or `addr` on-link). Lines read `dest plen src splen next_hop metric refcnt use flags
/// iface`, addresses as 32 hex digits.
pub fn next_hop(routes: &str, addr: Ipv6Addr, iface: Option<&str>) -> Option<(String, Ipv6Addr)> {
    let target = u128::from(addr);
    let best = routes
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let dest = u128::from_str_radix(f.first()?, 16).ok()?;
            let len = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let hop = u128::from_str_radix(f.get(4)?, 16).ok()?;
            let metric = u32::from_str_radix(f.get(5)?, 16).ok()?;
            let flags = u32::from_str_radix(f.get(8)?, 16).ok()?;
            let name = *f.get(9)?;
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            let usable = flags & RTF_UP != 0 && flags & RTF_REJECT == 0 && name != "lo";
            (usable && iface.is_none_or(|i| i == name) && target & mask == dest & mask)
                .then(|| (name.to_owned(), hop, len, metric))
        })
        .min_by_key(|&(_, _, len, metric)| (std::cmp::Reverse(len), metric));
    match best {
        Some((name, 0, ..)) => Some((name, addr)),
        Some((name, hop, ..)) => Some((name, Ipv6Addr::from(hop))),
        None => iface.map(|name| (name.to_owned(), addr)),
    }
}

/// The first global (not link-local) IPv6 address of `iface`.
pub fn address_of(iface: &str) -> io::Result<Ipv6Addr> {
    getifaddrs()
        .map_err(|e| io::Error::other(format!("getifaddrs: {e}")))?
        .filter(|a| a.interface_name == iface)
        .filter_map(|a| Some(a.address?.as_sockaddr_in6()?.ip()))
        .find(|ip| !ip.is_unicast_link_local())
        .ok_or_else(|| io::Error::other(format!("no global IPv6 address on {iface}")))
}

/// The MAC address of `ip` on `iface` in the neighbour table, if resolved.
pub fn neighbour(ip: Ipv6Addr, iface: &str) -> Option<[u8; 6]> {
    let out = Command::new("ip")
        .args(["-6", "neigh", "show", &ip.to_string(), "dev", iface])
        .output()
        .ok()?;
    lladdr(&String::from_utf8_lossy(&out.stdout))
}

/// The link-layer address in `ip neigh` output (`<ip> lladdr aa:bb:.. REACHABLE`).
fn lladdr(output: &str) -> Option<[u8; 6]> {
    let mut words = output.split_whitespace();
    words.find(|w| *w == "lladdr")?;
    let mut mac = [0u8; 6];
    let mut parts = words.next()?.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// An IPv6 header (hop limit 64) and a UDP header with its (mandatory) checksum, then
/// `payload`.
pub fn udp_packet(
    (source, source_port): (Ipv6Addr, u16),
    (dest, dest_port): (Ipv6Addr, u16),
    payload: &[u8],
) -> io::Result<Vec<u8>> {
    let udp_len = u16::try_from(UDP_HEADER_LEN + payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "payload too long"))?;
    let mut packet = Vec::with_capacity(IPV6_HEADER_LEN + usize::from(udp_len));
    packet.extend_from_slice(&[0x60, 0, 0, 0]);
    packet.extend_from_slice(&udp_len.to_be_bytes());
    packet.extend_from_slice(&[IPPROTO_UDP, 64]);
    packet.extend_from_slice(&source.octets());
    packet.extend_from_slice(&dest.octets());
    packet.extend_from_slice(&source_port.to_be_bytes());
    packet.extend_from_slice(&dest_port.to_be_bytes());
    packet.extend_from_slice(&udp_len.to_be_bytes());
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(payload);
    // The pseudo-header: addresses, UDP length (32 bits), three zero bytes, next header.
    let mut pseudo = Vec::with_capacity(40 + usize::from(udp_len));
    pseudo.extend_from_slice(&packet[8..IPV6_HEADER_LEN]);
    pseudo.extend_from_slice(&u32::from(udp_len).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, IPPROTO_UDP]);
    pseudo.extend_from_slice(&packet[IPV6_HEADER_LEN..]);
    let sum = match checksum(&pseudo) {
        0 => 0xffff,
        sum => sum,
    };
    packet[IPV6_HEADER_LEN + 6..IPV6_HEADER_LEN + 8].copy_from_slice(&sum.to_be_bytes());
    Ok(packet)
}

/// Reads the routing table of the caller's network namespace.
pub fn routes() -> io::Result<String> {
    fs::read_to_string("/proc/net/ipv6_route")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str = "\
fd000ec2000000000000000000000254 80 00000000000000000000000000000000 00 fd000254000000000000000000000002 00000400 00000001 00000000 00000003    imds0
fd000200000100000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000200000100000000000000000001 00000400 00000001 00000000 00000003     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
";

    #[test]
    fn picks_the_most_specific_usable_route() {
        let imds: Ipv6Addr = "fd00:ec2::254".parse().unwrap();
        assert_eq!(
            next_hop(ROUTES, imds, None),
            Some(("imds0".into(), "fd00:254::2".parse().unwrap()))
        );
        assert_eq!(
            next_hop(ROUTES, imds, Some("eth0")),
            Some(("eth0".into(), "fd00:200:1::1".parse().unwrap()))
        );
        let neighbour: Ipv6Addr = "fd00:200:1::7".parse().unwrap();
        assert_eq!(
            next_hop(ROUTES, neighbour, None),
            Some(("eth0".into(), neighbour))
        );
    }

    #[test]
    fn reads_the_link_layer_address() {
        assert_eq!(
            lladdr("fd00:200:1::1 lladdr 0a:1b:2c:3d:4e:5f REACHABLE\n"),
            Some([0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f])
        );
        assert_eq!(lladdr("fd00:200:1::1 FAILED\n"), None);
    }

    #[test]
    fn builds_a_checksummed_ipv6_udp_packet() {
        let packet = udp_packet(
            ("fd00:200:1::2".parse().unwrap(), 40_000),
            ("fd00:ec2::254".parse().unwrap(), 80),
            b"nodeward",
        )
        .unwrap();
        assert_eq!(packet.len(), 40 + 8 + 8);
        assert_eq!(packet[0] >> 4, 6);
        assert_eq!(u16::from_be_bytes([packet[4], packet[5]]), 16);
        let mut pseudo = packet[8..40].to_vec();
        pseudo.extend_from_slice(&16u32.to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 17]);
        pseudo.extend_from_slice(&packet[40..]);
        assert_eq!(checksum(&pseudo), 0, "the UDP checksum verifies");
    }
}
