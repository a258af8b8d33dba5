//! `udp-send`: one datagram by each way a program can hand the kernel a UDP destination.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd as _;

use clap::{Args, ValueEnum};
use nix::sys::socket::{MsgFlags, SockaddrLike as _, SockaddrStorage, sendmsg};
use nodeward_testkit::ProbeResult;

const PAYLOAD: [u8; 32] = *b"nodeward-probe udp datagram.....";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
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
    /// Destination port.
    #[arg(long)]
    port: u16,
    /// How the destination reaches the kernel.
    #[arg(long, value_enum, default_value_t)]
    mode: Mode,
}

impl UdpSendArgs {
    pub fn run(self) -> io::Result<ProbeResult> {
        send(SocketAddr::new(self.addr, self.port), self.mode)?;
        Ok(ProbeResult::success())
    }
}

/// Sends the datagram(s) of `mode` to `dest` from a fresh socket of `dest`'s family.
fn send(dest: SocketAddr, mode: Mode) -> io::Result<()> {
    let any: IpAddr = if dest.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let socket = UdpSocket::bind((any, 0))?;
    match mode {
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
    Ok(())
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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: UdpSendArgs,
    }

    fn parse(args: &[&str]) -> Result<UdpSendArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("udp-send").chain(args.iter().copied()))
            .map(|cli| cli.args)
    }

    #[test]
    fn parses_modes() {
        let args = parse(&["--addr", "169.254.169.254", "--port", "80"]).unwrap();
        assert_eq!(args.mode, Mode::Sendto, "the default");
        for (name, mode) in [
            ("sendto", Mode::Sendto),
            ("connect", Mode::Connect),
            ("sendmsg", Mode::Sendmsg),
            ("sendmmsg", Mode::Sendmmsg),
        ] {
            let args = parse(&[
                "--addr",
                "::ffff:169.254.169.254",
                "--port",
                "80",
                "--mode",
                name,
            ])
            .unwrap();
            assert_eq!((args.mode, args.port), (mode, 80));
            assert!(args.addr.is_ipv6());
        }
        assert!(parse(&["--addr", "169.254.169.254"]).is_err(), "no port");
        assert!(parse(&["--addr", "x", "--port", "80"]).is_err());
    }

    /// Over loopback in the test's own namespace: each mode delivers its datagrams, to an
    /// IPv4 address and to its IPv4-mapped form.
    #[test]
    fn every_mode_delivers() {
        let sink = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        sink.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let port = sink.local_addr().unwrap().port();
        let mapped = IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped());
        for ip in [IpAddr::V4(Ipv4Addr::LOCALHOST), mapped] {
            for (mode, datagrams) in [
                (Mode::Sendto, 1),
                (Mode::Connect, 1),
                (Mode::Sendmsg, 1),
                (Mode::Sendmmsg, 2),
            ] {
                send(SocketAddr::new(ip, port), mode).unwrap();
                for _ in 0..datagrams {
                    let mut buf = [0u8; 64];
                    let (len, _) = sink.recv_from(&mut buf).unwrap();
                    assert_eq!(&buf[..len], &PAYLOAD, "{mode:?} to {ip}");
                }
            }
        }
    }
}
