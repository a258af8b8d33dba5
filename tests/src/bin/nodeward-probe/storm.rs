//! `storm`: the benchmark workloads (the same as ../shared/research-data/perf-anchors.md):
//! N operations spread over T threads, timed from the first to the last, with nothing but
//! the operation in the loop.

use std::io::{self, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use clap::{Args, ValueEnum};
use nodeward_testkit::ProbeResult;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Kind {
    /// TCP `connect()`+`close()` (with a reset) to a listener on 127.0.0.1 in this process.
    Connect,
    /// UDP `sendto()` of 64 bytes to a socket on 127.0.0.1 in this process.
    Udp,
    /// fork+exec of /bin/true, and wait for it.
    Exec,
    /// A service-like mix, per operation: one exec of /bin/true, 10 TCP connects, 10 UDP
    /// sends, 10 reads of 4 KiB and about 50 µs of computation.
    Mix,
}

#[derive(Args)]
pub struct StormArgs {
    /// The workload.
    #[arg(value_enum)]
    kind: Kind,
    /// Operations in total, shared by the threads.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    count: u64,
    /// Threads performing them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    threads: u64,
}

impl StormArgs {
    pub fn run(self) -> io::Result<ProbeResult> {
        let seconds = match self.kind {
            Kind::Connect => connect(self.count, self.threads)?,
            Kind::Udp => udp(self.count, self.threads)?,
            Kind::Exec => spread(self.count, self.threads, |n| {
                let mut command = true_command();
                for _ in 0..n {
                    command.status()?;
                }
                Ok(())
            })?,
            Kind::Mix => mix(self.count, self.threads)?,
        };
        #[expect(clippy::cast_precision_loss, reason = "a rate, not an exact count")]
        let rate = self.count as f64 / seconds;
        Ok(ProbeResult {
            ops: Some(self.count),
            seconds: Some(seconds),
            rate: Some(rate),
            ..ProbeResult::success()
        })
    }
}

fn true_command() -> Command {
    let mut command = Command::new("/bin/true");
    command.stdin(Stdio::null());
    command
}

/// Operations of each kind in one [`Kind::Mix`] operation.
const MIX_EACH: usize = 10;

fn mix(count: u64, threads: u64) -> io::Result<f64> {
    let listener = listener()?;
    let addr = listener.local_addr()?;
    let sink = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    let to = sink.local_addr()?;
    let file = tempfile::tempfile()?;
    file.set_len(4096 * MIX_EACH as u64)?;
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| accept_until(&listener, &stop));
        let result = spread(count, threads, |n| {
            use std::os::unix::fs::FileExt as _;
            let mut command = true_command();
            let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
            let mut buf = [0u8; 4096];
            for _ in 0..n {
                command.status()?;
                for i in 0..MIX_EACH {
                    reset_on_close(&TcpStream::connect(addr)?)?;
                    socket.send_to(&buf[..64], to)?;
                    file.read_exact_at(&mut buf, 4096 * i as u64)?;
                }
                std::hint::black_box(compute(&buf));
            }
            Ok(())
        });
        stop_accepting(addr, &stop);
        result
    })
}

/// About 50 µs of arithmetic on this machine kind, which the hooks do not see.
fn compute(seed: &[u8]) -> u64 {
    let mut x = seed.iter().map(|&b| u64::from(b)).sum::<u64>() | 1;
    for _ in 0..40_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

fn accept_until(listener: &TcpListener, stop: &AtomicBool) {
    for stream in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        drop(stream);
    }
}

fn stop_accepting(addr: std::net::SocketAddr, stop: &AtomicBool) {
    stop.store(true, Ordering::Relaxed);
    // Wakes the accept loop so it sees the flag.
    let _ = TcpStream::connect(addr).and_then(|mut s| s.flush());
}

/// Runs `work(n)` on `threads` threads sharing `count`; returns the wall time in seconds.
fn spread(
    count: u64,
    threads: u64,
    work: impl Fn(u64) -> io::Result<()> + Sync,
) -> io::Result<f64> {
    let start = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let n = count / threads + u64::from(i < count % threads);
                let work = &work;
                scope.spawn(move || work(n))
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("a storm thread panicked"))
    })?;
    Ok(start.elapsed().as_secs_f64())
}

/// A loopback listener with a deep accept queue. std listens with a backlog of 128; two
/// connecting threads overflow that, the kernel drops SYNs and clients retry after a
/// second, which would measure the retry timer instead of the connect path.
fn listener() -> io::Result<TcpListener> {
    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, bind, listen, socket,
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(io::Error::from)?;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::new(127, 0, 0, 1, 0),
    )
    .map_err(io::Error::from)?;
    listen(&fd, Backlog::new(4096).map_err(io::Error::from)?).map_err(io::Error::from)?;
    Ok(TcpListener::from(fd))
}

fn connect(count: u64, threads: u64) -> io::Result<f64> {
    let listener = listener()?;
    let addr = listener.local_addr()?;
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| accept_until(&listener, &stop));
        let result = spread(count, threads, |n| {
            for _ in 0..n {
                let stream = TcpStream::connect(addr)?;
                reset_on_close(&stream)?;
            }
            Ok(())
        });
        stop_accepting(addr, &stop);
        result
    })
}

/// `SO_LINGER` 0: close with a reset, leaving no `TIME_WAIT`. Otherwise tens of thousands
/// of connections exhaust the ephemeral ports and every later run (on either side of a
/// comparison) measures the kernel's search for a free port instead.
fn reset_on_close(stream: &TcpStream) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    nix::sys::socket::setsockopt(stream, nix::sys::socket::sockopt::Linger, &linger)
        .map_err(io::Error::from)
}

fn udp(count: u64, threads: u64) -> io::Result<f64> {
    // Never read: once its buffer is full the kernel drops datagrams, and sendto() still
    // succeeds, so the sender's cost is what is measured.
    let sink = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    let to = sink.local_addr()?;
    let payload = [0u8; 64];
    spread(count, threads, |n| {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        for _ in 0..n {
            socket.send_to(&payload, to)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: StormArgs,
    }

    fn parse(args: &[&str]) -> Result<StormArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("storm").chain(args.iter().copied()))
            .map(|cli| cli.args)
    }

    #[test]
    fn parses() {
        let args = parse(&["connect", "--count", "1000", "--threads", "4"]).unwrap();
        assert_eq!(
            (args.kind, args.count, args.threads),
            (Kind::Connect, 1000, 4)
        );
        let args = parse(&["udp", "--count", "5"]).unwrap();
        assert_eq!(
            (args.kind, args.threads),
            (Kind::Udp, 1),
            "one thread by default"
        );
        assert_eq!(parse(&["exec", "--count", "5"]).unwrap().kind, Kind::Exec);
        for bad in [
            &["udp"][..],
            &["udp", "--count", "0"],
            &["udp", "--count", "5", "--threads", "0"],
            &["udp", "--count", "5", "--threads", "65"],
            &["tcp", "--count", "5"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn spreads_the_count_over_the_threads() {
        let done = std::sync::atomic::AtomicU64::new(0);
        let seconds = spread(10, 3, |n| {
            done.fetch_add(n, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
        assert_eq!(done.into_inner(), 10);
        assert!(seconds >= 0.0);
    }

    /// Over loopback in the test's own namespace, as the benchmark runs them.
    #[test]
    fn loopback_storms_complete() {
        for kind in [Kind::Connect, Kind::Udp, Kind::Mix] {
            let got = StormArgs {
                kind,
                count: 100,
                threads: 2,
            }
            .run()
            .unwrap();
            assert_eq!(got.ops, Some(100), "{kind:?}");
            assert!(got.rate.is_some_and(|r| r > 0.0), "{kind:?}: {got:?}");
        }
    }
}
