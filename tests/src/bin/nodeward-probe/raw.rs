//! `raw-send`: an ICMP echo request crafted by hand on a raw socket. No connect or sendmsg
//! hook sees it; only a program on the packet's way out can stop it.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd as _;

use clap::Args;
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrStorage, sendto, socket,
};
use nodeward_testkit::ProbeResult;

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REQUEST_V6: u8 = 128;
const PAYLOAD: &[u8; 8] = b"nodeward";

#[derive(Args)]
pub struct RawSendArgs {
    /// Destination address.
    #[arg(long)]
    addr: IpAddr,
    /// Keep the socket open this long after sending, as a pinging daemon would.
    #[arg(long, default_value_t = 0)]
    hold_ms: u64,
}

impl RawSendArgs {
    pub fn run(self) -> io::Result<ProbeResult> {
        let (family, protocol, kind) = match self.addr {
            IpAddr::V4(_) => (AddressFamily::Inet, SockProtocol::Icmp, ECHO_REQUEST_V4),
            IpAddr::V6(_) => (AddressFamily::Inet6, SockProtocol::IcmpV6, ECHO_REQUEST_V6),
        };
        let fd = socket(family, SockType::Raw, SockFlag::SOCK_CLOEXEC, protocol)
            .map_err(io::Error::from)?;
        let packet = echo_request(kind, self.addr.is_ipv4());
        let to = SockaddrStorage::from(SocketAddr::new(self.addr, 0));
        sendto(fd.as_raw_fd(), &packet, &to, MsgFlags::empty()).map_err(io::Error::from)?;
        std::thread::sleep(std::time::Duration::from_millis(self.hold_ms));
        drop(fd);
        Ok(ProbeResult::success())
    }
}

/// Type, code, checksum, identifier, sequence, payload. The kernel fills the ICMPv6
/// checksum itself (it covers a pseudo-header only it knows); ICMPv4's is ours to set.
fn echo_request(kind: u8, v4: bool) -> Vec<u8> {
    let mut packet = vec![kind, 0, 0, 0, 0x4e, 0x57, 0, 1];
    packet.extend_from_slice(PAYLOAD);
    if v4 {
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    packet
}

/// The Internet checksum (RFC 1071), for ICMP here and the IPv4 and UDP headers of
/// `packet-send`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_verifies_to_zero() {
        let packet = echo_request(ECHO_REQUEST_V4, true);
        assert_eq!(
            checksum(&packet),
            0,
            "a packet with its checksum sums to all ones"
        );
        assert_eq!(
            echo_request(ECHO_REQUEST_V6, false)[2..4],
            [0, 0],
            "left to the kernel"
        );
    }
}
