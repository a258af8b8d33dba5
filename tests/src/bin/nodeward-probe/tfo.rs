//! `tcp-fastopen`: a TCP connection opened by sendto(2) with `MSG_FASTOPEN` and data, no
//! connect(2) call, a path that an enforcement hooked only on connect(2) could miss.
//!
//! Needs the client bit (1) of `net.ipv4.tcp_fastopen`, on by default in every new network
//! namespace; without it sendto fails with `EOPNOTSUPP`. With no cookie cached yet (a
//! fresh probe never has one) the SYN asks for a cookie and the data follows the
//! handshake, so the server sees an ordinary connection and request. On a blocking socket
//! sendto returns once the data is queued after the handshake; `SO_SNDTIMEO` bounds that.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd as _;

use clap::Args;
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockType, SockaddrStorage, sendto, setsockopt, socket,
    sockopt,
};
use nix::sys::time::{TimeVal, TimeValLike as _};
use nodeward_testkit::ProbeResult;

/// The data sent with the SYN: a request the fake IMDS records (path `/`).
const REQUEST: &[u8] = b"GET / HTTP/1.0\r\n\r\n";

#[derive(Args)]
pub struct TcpFastOpenArgs {
    /// Destination address (IPv4, or IPv6 from an `AF_INET6` socket).
    #[arg(long)]
    addr: IpAddr,
    /// Destination port.
    #[arg(long)]
    port: u16,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
}

impl TcpFastOpenArgs {
    pub fn run(self) -> io::Result<ProbeResult> {
        let family = if self.addr.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
            .map_err(io::Error::from)?;
        let timeout = TimeVal::milliseconds(i64::try_from(self.timeout_ms).unwrap_or(i64::MAX));
        setsockopt(&fd, sockopt::SendTimeout, &timeout).map_err(io::Error::from)?;
        let to = SockaddrStorage::from(SocketAddr::new(self.addr, self.port));
        let flags = MsgFlags::from_bits_retain(libc::MSG_FASTOPEN);
        sendto(fd.as_raw_fd(), REQUEST, &to, flags).map_err(io::Error::from)?;
        Ok(ProbeResult::success())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;
    use std::net::{Ipv4Addr, TcpListener};

    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: TcpFastOpenArgs,
    }

    #[test]
    fn parses() {
        let cli = Cli::try_parse_from(["tfo", "--addr", "fd00:ec2::254", "--port", "80"]).unwrap();
        assert_eq!((cli.args.port, cli.args.timeout_ms), (80, 2000));
        assert!(
            Cli::try_parse_from(["tfo", "--addr", "::1"]).is_err(),
            "no port"
        );
        assert!(
            Cli::try_parse_from(["tfo", "--addr", "::1", "--port", "1", "--timeout-ms", "0"])
                .is_err()
        );
    }

    /// Over loopback in the test's own namespace: the data sent with the SYN request
    /// arrives on an ordinary accepted connection.
    #[test]
    fn delivers_the_payload() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let args = TcpFastOpenArgs {
            addr: Ipv4Addr::LOCALHOST.into(),
            port,
            timeout_ms: 2000,
        };
        assert!(args.run().unwrap().ok);
        let (mut stream, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).unwrap();
        assert_eq!(got, REQUEST);
    }
}
