//! `nodeward-probe`: the network client tests run inside simulated pods.
//!
//! Each subcommand tries one network operation and prints exactly one JSON line, a
//! [`ProbeResult`]: `{"ok":true,...}` and exit 0, or `{"ok":false,"errno":1,"error":"..."}`
//! and exit 1. Bad arguments exit 2 with clap's usage message.

mod http;
mod packet;
mod packet6;
mod raw;
mod storm;
mod tfo;
mod udp;

use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use nodeward_testkit::ProbeResult;

#[derive(Parser)]
#[command(
    version,
    about = "Network probes for nodeward tests; prints one JSON line"
)]
struct Cli {
    #[command(subcommand)]
    probe: Probe,
}

#[derive(Subcommand)]
enum Probe {
    /// Open a TCP connection, then close it.
    Connect(ConnectArgs),
    /// Fetch a URL with a plain HTTP/1.1 GET (`http://` only, IP literals or names).
    HttpGet(http::HttpGetArgs),
    /// Send one UDP datagram (sendto, connect+send, sendmsg or sendmmsg).
    UdpSend(udp::UdpSendArgs),
    /// Open a TCP connection with data in the SYN: sendto(2) with `MSG_FASTOPEN`.
    TcpFastopen(tfo::TcpFastOpenArgs),
    /// Send an ICMP echo request from a raw socket.
    RawSend(raw::RawSendArgs),
    /// Send UDP datagrams as whole IPv4 packets on an `AF_PACKET` socket, past every
    /// socket-level hook of the sender.
    PacketSend(packet::PacketSendArgs),
    /// Run a benchmark workload and report its rate.
    Storm(storm::StormArgs),
    /// Try a TCP connection to each of a range of ports, in order (one distinct
    /// destination each, so every attempt is its own finding); succeeds whatever the
    /// outcomes and counts them.
    ConnectRange(ConnectRangeArgs),
}

impl Probe {
    fn run(self) -> io::Result<ProbeResult> {
        match self {
            Self::Connect(args) => args.run(),
            Self::HttpGet(args) => args.run(),
            Self::UdpSend(args) => args.run(),
            Self::TcpFastopen(args) => args.run(),
            Self::RawSend(args) => args.run(),
            Self::PacketSend(args) => args.run(),
            Self::Storm(args) => args.run(),
            Self::ConnectRange(args) => args.run(),
        }
    }
}

fn main() -> ExitCode {
    let result = Cli::parse()
        .probe
        .run()
        .unwrap_or_else(|e| ProbeResult::failure(&e));
    println!(
        "{}",
        serde_json::to_string(&result).expect("a ProbeResult serializes")
    );
    if result.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[derive(Args)]
struct ConnectArgs {
    /// Address to connect to: IPv4, or IPv6 including IPv4-mapped (`::ffff:a.b.c.d`), which
    /// connects from an `AF_INET6` socket.
    #[arg(long)]
    addr: IpAddr,
    /// TCP port.
    #[arg(long)]
    port: u16,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
}

impl ConnectArgs {
    fn run(self) -> io::Result<ProbeResult> {
        connect(self.addr, self.port, self.timeout_ms)?;
        Ok(ProbeResult::success())
    }
}

#[derive(Args)]
struct ConnectRangeArgs {
    /// Address to connect to.
    #[arg(long)]
    addr: IpAddr,
    /// First port.
    #[arg(long)]
    from: u16,
    /// How many ports, from `from` up.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    count: u16,
    /// Give up on each after this many milliseconds.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
}

impl ConnectRangeArgs {
    fn run(self) -> io::Result<ProbeResult> {
        let last = self.from.checked_add(self.count - 1).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "the port range passes 65535")
        })?;
        let mut ops = 0;
        for port in self.from..=last {
            let _ = connect(self.addr, port, self.timeout_ms);
            ops += 1;
        }
        Ok(ProbeResult {
            ops: Some(ops),
            ..ProbeResult::success()
        })
    }
}

/// std opens an `AF_INET6` socket for every `SocketAddr::V6`, an IPv4-mapped one too, so
/// the connect goes through the kernel's IPv6 entry point (and its connect6 hook).
fn connect(addr: IpAddr, port: u16, timeout_ms: u64) -> io::Result<TcpStream> {
    TcpStream::connect_timeout(
        &SocketAddr::new(addr, port),
        Duration::from_millis(timeout_ms),
    )
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, TcpListener};

    use super::*;

    fn parse(args: &[&str]) -> Result<Probe, clap::Error> {
        Cli::try_parse_from(std::iter::once("nodeward-probe").chain(args.iter().copied()))
            .map(|cli| cli.probe)
    }

    #[test]
    fn parses_every_subcommand() {
        let Ok(Probe::Connect(connect)) = parse(&[
            "connect",
            "--addr",
            "::ffff:169.254.169.254",
            "--port",
            "80",
        ]) else {
            panic!("connect");
        };
        assert!(connect.addr.is_ipv6(), "a mapped address stays IPv6");
        assert_eq!((connect.port, connect.timeout_ms), (80, 2000));
        assert!(matches!(
            parse(&["http-get", "http://169.254.169.254/"]),
            Ok(Probe::HttpGet(_))
        ));
        assert!(matches!(
            parse(&["udp-send", "--addr", "fd00:ec2::254", "--port", "80"]),
            Ok(Probe::UdpSend(_))
        ));
        assert!(matches!(
            parse(&["tcp-fastopen", "--addr", "169.254.169.254", "--port", "80"]),
            Ok(Probe::TcpFastopen(_))
        ));
        assert!(matches!(
            parse(&["raw-send", "--addr", "169.254.169.254"]),
            Ok(Probe::RawSend(_))
        ));
        assert!(matches!(
            parse(&["packet-send", "--addr", "169.254.169.254", "--port", "80"]),
            Ok(Probe::PacketSend(_))
        ));
        assert!(matches!(
            parse(&["storm", "udp", "--count", "10"]),
            Ok(Probe::Storm(_))
        ));
    }

    #[test]
    fn rejects_bad_arguments() {
        for bad in [
            &["connect", "--addr", "169.254.169.254"][..],
            &["connect", "--addr", "metadata", "--port", "80"],
            &[
                "connect",
                "--addr",
                "::1",
                "--port",
                "80",
                "--timeout-ms",
                "0",
            ],
            &[
                "udp-send", "--addr", "::1", "--port", "80", "--mode", "write",
            ],
            &["raw-send"],
            &["packet-send", "--addr", "fd00:ec2::254"],
            &[
                "packet-send",
                "--addr",
                "169.254.169.254",
                "--port",
                "80",
                "--count",
                "0",
            ],
            &["storm", "tcp", "--count", "10"],
            &["nope"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    /// Over loopback in the test's own namespace: the socket behind a connect to an
    /// IPv4-mapped address is an IPv6 one, whose local address is mapped too.
    #[test]
    fn connects_to_mapped_addresses_from_an_ipv6_socket() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let mapped = Ipv4Addr::LOCALHOST.to_ipv6_mapped();
        let stream = connect(IpAddr::V6(mapped), port, 2000).unwrap();
        let local = stream.local_addr().unwrap();
        assert_eq!(local.ip(), IpAddr::V6(mapped), "{local}");
        let (_, peer) = listener.accept().unwrap();
        assert_eq!(
            peer.ip(),
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            "the server sees IPv4"
        );
    }
}
