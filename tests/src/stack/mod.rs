//! nodeward's own processes around a simulated node: a collector on loopback, an agent
//! pointed at the node's cgroups, and a SOC `tail` subscriber. Real binaries, real gRPC
//! over sockets, a real SQLite file; each writes its log to the node's scratch directory,
//! which is printed when a test fails.

mod agent;
mod collector;
mod daemon;
mod tail;

pub use agent::{AgentProcess, AgentSpec};
pub use collector::CollectorProcess;
pub use daemon::Daemon;
pub use tail::TailProcess;

/// The value of `series` in the Prometheus text served at `http://<addr>/metrics`.
fn scrape(addr: &str, series: &str) -> Option<f64> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}
