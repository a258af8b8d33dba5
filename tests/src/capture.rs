//! What reaches the simulated metadata service other than HTTP: UDP datagrams to port 80
//! and ICMP echo requests, counted by address so a test can say "nothing arrived", for the
//! UDP and raw-socket paths an agent must also close.

use std::net::{IpAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd as _, BorrowedFd, OwnedFd};

use nix::sys::socket::{
    AddressFamily, SockFlag, SockProtocol, SockType, SockaddrIn, SockaddrIn6, SockaddrStorage,
    bind, recvfrom, socket,
};

/// `ICMP_ECHO` and `ICMPV6_ECHO_REQUEST` message types.
const ICMP_ECHO: u8 = 8;
const ICMPV6_ECHO_REQUEST: u8 = 128;

/// A datagram or packet that arrived: who sent it, to which served address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImdsPacket {
    /// The sender, e.g. a pod's 10.200.1.2.
    pub peer: IpAddr,
    /// The served address it was sent to.
    pub local: IpAddr,
}

/// The sockets that see non-HTTP traffic to the served addresses.
#[derive(Debug)]
pub(crate) struct Capture {
    udp: Vec<UdpSocket>,
    /// One raw ICMP (or ICMPv6) socket per address; binding filters by destination.
    icmp: Vec<(OwnedFd, IpAddr)>,
}

/// What one readable socket delivered.
pub(crate) enum Received {
    Udp(ImdsPacket),
    Icmp(ImdsPacket),
    Nothing,
}

impl Capture {
    /// Binds UDP port 80 and a raw echo-request socket on every address (in the calling
    /// thread's network namespace).
    pub(crate) fn bind(addrs: &[IpAddr]) -> Result<Self, String> {
        let udp = addrs
            .iter()
            .map(|ip| UdpSocket::bind((*ip, 80)).map_err(|e| format!("bind udp {ip}:80: {e}")))
            .collect::<Result<_, _>>()?;
        let icmp = addrs
            .iter()
            .map(|ip| raw_icmp(*ip).map(|fd| (fd, *ip)))
            .collect::<Result<_, _>>()?;
        Ok(Self { udp, icmp })
    }

    /// Every socket to poll, in the order [`Capture::receive`] numbers them.
    pub(crate) fn fds(&self) -> Vec<BorrowedFd<'_>> {
        self.udp
            .iter()
            .map(AsFd::as_fd)
            .chain(self.icmp.iter().map(|(fd, _)| fd.as_fd()))
            .collect()
    }

    /// Reads one datagram or packet from socket `index` of [`Capture::fds`].
    pub(crate) fn receive(&self, index: usize) -> Received {
        let mut buf = [0u8; 2048];
        if let Some(socket) = self.udp.get(index) {
            return match (socket.recv_from(&mut buf), socket.local_addr()) {
                (Ok((_, peer)), Ok(local)) => Received::Udp(ImdsPacket {
                    peer: peer.ip(),
                    local: local.ip(),
                }),
                _ => Received::Nothing,
            };
        }
        let Some((fd, local)) = self.icmp.get(index - self.udp.len()) else {
            return Received::Nothing;
        };
        let Ok((len, Some(from))) = recvfrom::<SockaddrStorage>(fd.as_raw_fd(), &mut buf) else {
            return Received::Nothing;
        };
        let Some(peer) = ip_of(&from) else {
            return Received::Nothing;
        };
        let packet = &buf[..len];
        // IPv4 raw sockets deliver the IP header; IPv6 ones start at the ICMPv6 header.
        let icmp_type = match local {
            IpAddr::V4(_) => packet
                .first()
                .and_then(|b| packet.get(usize::from(b & 0x0f) * 4)),
            IpAddr::V6(_) => packet.first(),
        };
        match (local, icmp_type) {
            (IpAddr::V4(_), Some(&ICMP_ECHO)) | (IpAddr::V6(_), Some(&ICMPV6_ECHO_REQUEST)) => {
                Received::Icmp(ImdsPacket {
                    peer,
                    local: *local,
                })
            }
            _ => Received::Nothing,
        }
    }
}

fn raw_icmp(ip: IpAddr) -> Result<OwnedFd, String> {
    let (family, protocol) = match ip {
        IpAddr::V4(_) => (AddressFamily::Inet, SockProtocol::Icmp),
        IpAddr::V6(_) => (AddressFamily::Inet6, SockProtocol::IcmpV6),
    };
    let fd = socket(family, SockType::Raw, SockFlag::SOCK_CLOEXEC, protocol)
        .map_err(|e| format!("raw socket for {ip}: {e}"))?;
    let bound = match ip {
        IpAddr::V4(v4) => bind(
            fd.as_raw_fd(),
            &SockaddrIn::from(std::net::SocketAddrV4::new(v4, 0)),
        ),
        IpAddr::V6(v6) => bind(
            fd.as_raw_fd(),
            &SockaddrIn6::from(std::net::SocketAddrV6::new(v6, 0, 0, 0)),
        ),
    };
    bound.map_err(|e| format!("bind raw socket to {ip}: {e}"))?;
    Ok(fd)
}

fn ip_of(addr: &SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    addr.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
}
