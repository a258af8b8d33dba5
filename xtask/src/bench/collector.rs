//! `cargo xtask bench collector`: a real `nodeward-collector serve` (release build) on
//! loopback under many simulated agents, each a real gRPC Report stream over its own
//! connection, and one SOC subscriber. Prints the findings stored per second, the
//! latency from an agent's send to the subscriber, and the collector's CPU and memory;
//! once with SQLite and once with a private PostgreSQL cluster.
//!
//! gRPC runs in plaintext (`tls: disabled`): the load generator shares the machine's
//! cores with the collector, and TLS would measure rustls as much as the collector.

mod load;
mod pg;

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};
use clap::ValueEnum;
use nodeward_testkit::stack::Daemon;

use crate::cmd::{self, cargo};

/// Options of `cargo xtask bench collector`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Simulated agents, each with its own connection and Report stream.
    #[arg(long, default_value_t = 200)]
    agents: usize,
    /// Length of the measured window, in seconds.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Findings per second each agent sends; 0: as fast as acknowledgements allow (the
    /// collector's saturation throughput).
    #[arg(long, default_value_t = 0)]
    rate: u32,
    /// Which store to measure.
    #[arg(long, value_enum, default_value_t = StorageKind::Both)]
    storage: StorageKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StorageKind {
    Sqlite,
    Postgres,
    Both,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    cmd::run(&mut cargo(&[
        "build",
        "--release",
        "--package",
        "nodeward-collector",
    ]))?;
    let binary = target_dir()?.join("release/nodeward-collector");
    if !binary.is_file() {
        bail!("{} was not built", binary.display());
    }
    let load = load::Load {
        agents: args.agents,
        window: Duration::from_secs(args.seconds),
        rate: args.rate,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    if args.storage != StorageKind::Postgres {
        let scratch = tempfile::Builder::new()
            .prefix("nodeward-bench-")
            .tempdir()?;
        let url = format!("sqlite://{}", scratch.path().join("collector.db").display());
        let report = measure(&runtime, &binary, scratch.path(), &url, load, None)?;
        report.print("SQLite (WAL, synchronous=FULL)", load);
    }
    if args.storage != StorageKind::Sqlite {
        let cluster = pg::Cluster::start()?;
        let scratch = tempfile::Builder::new()
            .prefix("nodeward-bench-")
            .tempdir()?;
        let report = measure(
            &runtime,
            &binary,
            scratch.path(),
            &cluster.url(),
            load,
            Some(cluster.pid()),
        )?;
        report.print("PostgreSQL (private cluster, fsync on)", load);
    }
    Ok(())
}

/// Runs one collector against `storage` under `load`.
fn measure(
    runtime: &tokio::runtime::Runtime,
    binary: &Path,
    scratch: &Path,
    storage: &str,
    load: load::Load,
    postmaster: Option<u32>,
) -> anyhow::Result<Report> {
    let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let config = scratch.join("collector.yaml");
    std::fs::write(
        &config,
        format!("listen: {addr}\nstorage: {storage}\nhttpListen: 127.0.0.1:0\ntls: disabled\n"),
    )?;
    let mut command = Command::new(binary);
    command
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null());
    let mut collector = Daemon::start(
        command,
        "nodeward-collector",
        &scratch.join("collector.log"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        if !collector.is_running() || std::time::Instant::now() > deadline {
            bail!("the collector did not start:\n{}", collector.log());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = collector.pid();
    let server_cpu = || postmaster.map_or(0.0, tree_cpu_seconds);
    let (cpu_before, server_before, own_before) = (
        super::cpu_seconds(pid),
        server_cpu(),
        super::cpu_seconds(std::process::id()),
    );
    eprintln!(
        "{} agents streaming to {addr} for {:?}…",
        load.agents, load.window
    );
    let started = std::time::Instant::now();
    let outcome = runtime
        .block_on(load::run(&format!("http://{addr}"), load))
        .context("running the load")?;
    let report = Report {
        elapsed: started.elapsed().as_secs_f64(),
        collector_cpu: super::cpu_seconds(pid) - cpu_before,
        server_cpu: postmaster.map(|_| server_cpu() - server_before),
        own_cpu: super::cpu_seconds(std::process::id()) - own_before,
        peak_rss_kib: peak_rss_kib(pid),
        outcome,
    };
    if !collector.terminate().success() {
        bail!("the collector did not stop cleanly:\n{}", collector.log());
    }
    Ok(report)
}

struct Report {
    outcome: load::Outcome,
    /// Seconds from the first connection to the last acknowledgement (window and drain),
    /// over which the CPU times were taken.
    elapsed: f64,
    collector_cpu: f64,
    /// PostgreSQL's own processes (postmaster and backends).
    server_cpu: Option<f64>,
    own_cpu: f64,
    peak_rss_kib: u64,
}

impl Report {
    #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    fn print(&self, storage: &str, load: load::Load) {
        let o = &self.outcome;
        let window = load.window.as_secs_f64();
        let rate = if load.rate == 0 {
            "as fast as acks allow".to_owned()
        } else {
            format!("{} findings/s each", load.rate)
        };
        println!(
            "\nnodeward bench collector: {storage}; {} agents ({rate}), {window:.0} s, plaintext gRPC on loopback (tls: disabled)",
            load.agents
        );
        println!(
            "  stored (acknowledged) in the window: {} = {:.0} findings/s",
            o.stored_in_window,
            o.stored_in_window as f64 / window
        );
        println!(
            "  sent {}, stored after the drain {}; agents failed: {}",
            o.sent,
            o.stored,
            o.failures.len()
        );
        for failure in o.failures.iter().take(3) {
            println!("    {failure}");
        }
        let mut latencies = o.latencies_us.clone();
        latencies.sort_unstable();
        let pct = |p: f64| -> f64 {
            if latencies.is_empty() {
                return f64::NAN;
            }
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "an index into the sorted samples"
            )]
            let i = ((latencies.len() - 1) as f64 * p).round() as usize;
            latencies[i] as f64 / 1000.0
        };
        println!(
            "  SOC subscriber received {} of them; latency agent send → subscriber (ms): p50 {:.1}, p90 {:.1}, p99 {:.1}, max {:.1}",
            latencies.len(),
            pct(0.5),
            pct(0.9),
            pct(0.99),
            pct(1.0)
        );
        println!(
            "  over {:.1} s (window and drain): collector CPU {:.1} s ({:.2} cores), peak RSS {:.0} MiB",
            self.elapsed,
            self.collector_cpu,
            self.collector_cpu / self.elapsed,
            self.peak_rss_kib as f64 / 1024.0
        );
        if let Some(server) = self.server_cpu {
            println!(
                "  PostgreSQL server processes: CPU {server:.1} s ({:.2} cores)",
                server / self.elapsed
            );
        }
        println!(
            "  load generator (this process, same {} cores): CPU {:.1} s",
            std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
            self.own_cpu
        );
    }
}

/// The directory cargo builds into (`CARGO_TARGET_DIR`, config, or `target/`).
fn target_dir() -> anyhow::Result<PathBuf> {
    let out = cmd::output(&mut cargo(&[
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
    ]))
    .context("cargo metadata failed")?;
    let metadata: serde_json::Value = serde_json::from_str(&out)?;
    metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata has no target_directory")
}

/// `VmHWM` (peak resident set) of a process, from /proc/<pid>/status.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU time of a process and its direct children (a postmaster and its backends).
fn tree_cpu_seconds(pid: u32) -> f64 {
    let children: f64 = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| parent_of(child) == Some(pid))
        .map(super::cpu_seconds)
        .sum();
    super::cpu_seconds(pid) + children
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The field after the state, past the command name (which may hold spaces).
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
