//! `udp-send`: one datagram by each way a program can hand the kernel a UDP destination.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd as _;

use clap::{Args, ValueEnum};
use nix::sys::socket::{MsgFlags, SockaddrLike as _, SockaddrStorage, sendmsg};
use nodeward_testkit::ProbeResult;

const PAYLOAD: [u8; 32] = *b"nodeward-probe udp datagram.....";

#[derive(Clone, Copy, Default, ValueEnum)]
enum Mode {
    /// sendto(2) on an unconnected socket.
    #[default]
    Sendto,
    /// connect(2), then send(2).
    Connect,
    /// sendmsg(2) with the destination in `msg_name`.
    Sendmsg,
    /// sendmmsg(2) with two messages, each with a destination.
    Sendmmsg,
}

#[derive(Args)]
pub struct UdpSendArgs {
    /// Destination address (IPv4, IPv6 or IPv4-mapped IPv6, which uses an IPv6 socket).
    #[arg(long)]
    addr: IpAddr,
    #[arg(long)]
    port: u16,
    #[arg(long, value_enum, default_value_t)]
    mode: Mode,
}

impl UdpSendArgs {
    pub fn run(self) -> io::Result<ProbeResult> {
        let dest = SocketAddr::new(self.addr, self.port);
        let any: IpAddr = if self.addr.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        let socket = UdpSocket::bind((any, 0))?;
        match self.mode {
            Mode::Sendto => drop(socket.send_to(&PAYLOAD, dest)?),
            Mode::Connect => {
                socket.connect(dest)?;
                socket.send(&PAYLOAD)?;
            }
            Mode::Sendmsg => {
                let to = SockaddrStorage::from(dest);
                let iov = [io::IoSlice::new(&PAYLOAD)];
                sendmsg(socket.as_raw_fd(), &iov, &[], MsgFlags::empty(), Some(&to))
                    .map_err(io::Error::from)?;
            }
            Mode::Sendmmsg => send_two(&socket, dest)?,
        }
        Ok(ProbeResult::success())
    }
}

/// sendmmsg(2) with two datagrams to `dest`; both must be sent.
fn send_two(socket: &UdpSocket, dest: SocketAddr) -> io::Result<()> {
    let to = SockaddrStorage::from(dest);
    let mut iov = [libc::iovec {
        iov_base: PAYLOAD.as_ptr().cast_mut().cast(),
        iov_len: PAYLOAD.len(),
    }];
    // SAFETY: an all-zero mmsghdr is a valid, empty message header.
    let mut messages: [libc::mmsghdr; 2] = unsafe { std::mem::zeroed() };
    for message in &mut messages {
        message.msg_hdr.msg_name = to.as_ptr().cast_mut().cast();
        message.msg_hdr.msg_namelen = to.len();
        message.msg_hdr.msg_iov = iov.as_mut_ptr();
        message.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: every pointer in `messages` refers to `to`, `iov` or PAYLOAD, all of which
    // outlive the call; the count matches the array.
    let sent = unsafe { libc::sendmmsg(socket.as_raw_fd(), messages.as_mut_ptr(), 2, 0) };
    match sent {
        2 => Ok(()),
        n if n < 0 => Err(io::Error::last_os_error()),
        n => Err(io::Error::other(format!("sendmmsg sent {n} of 2 messages"))),
    }
}
