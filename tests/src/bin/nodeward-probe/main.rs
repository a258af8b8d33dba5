//! `nodeward-probe`: the network client tests run inside simulated pods.
//!
//! Each subcommand tries one network operation and prints exactly one JSON line, a
//! [`ProbeResult`]: `{"ok":true,...}` and exit 0, or `{"ok":false,"errno":1,"error":"..."}`
//! and exit 1. Bad arguments exit 2 with clap's usage message.

mod http;
mod raw;
mod storm;
mod tfo;
mod udp;

use std::io;
use std::net::{SocketAddr, TcpStream};
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
    /// Run a benchmark workload and report its rate.
    Storm(storm::StormArgs),
}

impl Probe {
    fn run(self) -> io::Result<ProbeResult> {
        match self {
            Self::Connect(args) => args.run(),
            Self::HttpGet(args) => args.run(),
            Self::UdpSend(args) => args.run(),
            Self::TcpFastopen(args) => args.run(),
            Self::RawSend(args) => args.run(),
            Self::Storm(args) => args.run(),
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
    /// Address to connect to (IPv4 or IPv6).
    #[arg(long)]
    addr: std::net::IpAddr,
    /// TCP port.
    #[arg(long)]
    port: u16,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
}

impl ConnectArgs {
    fn run(self) -> io::Result<ProbeResult> {
        let addr = SocketAddr::new(self.addr, self.port);
        TcpStream::connect_timeout(&addr, Duration::from_millis(self.timeout_ms))?;
        Ok(ProbeResult::success())
    }
}
