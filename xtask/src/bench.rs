//! `cargo xtask bench <what>`: what nodeward costs the workloads it watches, measured as
//! the throughput of the same workload with nodeward and without, in one run, alternating
//! in random order (the method of ../shared/research-data/perf-anchors.md).
//!
//! The baseline runs as a node process (outside the pod cgroups); the measured run is a
//! hostNetwork pod, so both share one network namespace and differ only in the cgroup:
//! nodeward's programs (IMDS enforcement and the egress sensor on sockets, the exec sensor
//! filtered to the pod cgroup) only act on the pod's side. The agent runs with its default
//! configuration throughout.
//!
//! - `connect`: a TCP `connect()`+`close()` storm and a UDP `sendto()` storm to loopback.
//! - `exec`: fork+exec storms of /bin/true (two workers, and one with a core left idle),
//!   the connect storm and a service-like mix of execs, connects, sends and reads, with the agent's CPU time and the exec events it handled
//!   against the number expected.
//! - `collector`: the collector under many simulated agents (see `bench/collector.rs`).

mod collector;
mod kernel_cost;

use std::num::NonZeroUsize;

use anyhow::bail;
use clap::ValueEnum;
use nodeward_testkit::{
    PodSpec, ProbeResult, SimNode, SimPod,
    stack::{AgentProcess, AgentSpec, CollectorProcess},
};

use crate::cmd::{self, cargo};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Bench {
    /// IMDS enforcement and the egress sensor on `connect()` and UDP sends.
    Connect,
    /// The exec sensor on exec storms (and the connect storm alongside).
    Exec,
    /// The collector under many simulated agents: findings stored per second, latency to
    /// a SOC subscriber, CPU and memory, with SQLite and PostgreSQL.
    Collector,
}

pub use collector::Args as CollectorArgs;

struct Workload {
    name: &'static str,
    args: [&'static str; 6],
    /// Execs the workload makes in the pod, besides the probe's own.
    execs: u64,
}

const CONNECT: Workload = Workload {
    name: "TCP connect()+close(RST) to 127.0.0.1, 2 thr, 50k",
    args: ["storm", "connect", "--count", "50000", "--threads", "2"],
    execs: 0,
};
const UDP: Workload = Workload {
    name: "UDP sendto() 64 B to 127.0.0.1, 2 thr, 200k",
    args: ["storm", "udp", "--count", "200000", "--threads", "2"],
    execs: 0,
};
const EXEC_STORM: Workload = Workload {
    name: "exec storm: fork+exec(/bin/true), 2 workers, 20k",
    args: ["storm", "exec", "--count", "20000", "--threads", "2"],
    execs: 20_000,
};
const MIX: Workload = Workload {
    name: "mix: 1 exec, 10 connects, 10 sends, 10 reads, 2 thr, 3k",
    args: ["storm", "mix", "--count", "3000", "--threads", "2"],
    execs: 3_000,
};
const EXEC_ONE: Workload = Workload {
    name: "exec, 1 worker (a core left idle), 10k",
    args: ["storm", "exec", "--count", "10000", "--threads", "1"],
    execs: 10_000,
};

pub fn run(
    bench: Bench,
    agent_yaml: Option<&str>,
    repetitions: NonZeroUsize,
    collector_args: &CollectorArgs,
) -> anyhow::Result<()> {
    if let Bench::Collector = bench {
        // Neither eBPF nor root: only the collector is built and measured.
        return collector::run(collector_args);
    }
    crate::setup::run()?;
    // Optimised binaries: the agent's cost is what is being measured.
    cmd::run(&mut cargo(&["build", "--release", "--bins"]))?;
    if !crate::demo::is_root() {
        bail!(
            "the benchmark creates namespaces and cgroups and loads eBPF programs: run it as root"
        );
    }
    let release = cmd::workspace_root().join("target/release");
    // SAFETY: xtask is single-threaded here; nothing reads the environment concurrently.
    unsafe { std::env::set_var(nodeward_testkit::BIN_DIR_ENV, &release) };
    let repetitions = repetitions.get();
    match bench {
        Bench::Connect => measure("connect", &[CONNECT, UDP], agent_yaml, repetitions),
        Bench::Exec => measure(
            "exec",
            &[EXEC_STORM, EXEC_ONE, CONNECT, MIX],
            agent_yaml,
            repetitions,
        ),
        Bench::Collector => unreachable!("measured above"),
    }
}

/// Runs each workload `repetitions` times per side, alternating in random order; the
/// median is reported with min–max.
fn measure(
    what: &str,
    workloads: &[Workload],
    agent_yaml: Option<&str>,
    repetitions: usize,
) -> anyhow::Result<()> {
    let node = SimNode::builder()
        .pod(PodSpec::new("bench").host_network(true))
        .build();
    let pod = node.pod("bench");
    let collector = CollectorProcess::start(node.scratch_dir());
    let mut spec = AgentSpec::new(&collector.endpoint());
    if let Some(yaml) = agent_yaml {
        println!("agent config += {yaml}");
        spec = spec.extra_yaml(&format!("\n{yaml}\n"));
    }
    let mut agent = AgentProcess::start(&node, &spec);
    agent.wait_active();
    let agent_pid = agent.daemon().pid();
    println!("\nnodeward bench {what}: throughput with nodeward ÷ without, same run");
    println!("({repetitions} repetitions each, alternating in random order; median, min–max)\n");
    println!(
        "{:<52} {:>14} {:>14} {:>22}",
        "workload", "without (op/s)", "with (op/s)", "ratio"
    );
    let cpu_before = cpu_seconds(agent_pid);
    let mut expected_execs = 0;
    for workload in workloads {
        let mut without = Vec::new();
        let mut with = Vec::new();
        for _ in 0..repetitions {
            let pod_first = rand_bool();
            for on_pod in [pod_first, !pod_first] {
                let result = if on_pod {
                    pod.probe(&workload.args)
                } else {
                    node.host_probe(&workload.args)
                };
                let rate = rate_of(&result, workload.name);
                if on_pod {
                    with.push(rate);
                    // The probe's own exec is seen too.
                    expected_execs += workload.execs + 1;
                } else {
                    without.push(rate);
                }
            }
        }
        let ratios: Vec<f64> = with.iter().zip(&without).map(|(w, b)| w / b).collect();
        println!(
            "{:<52} {:>14.0} {:>14.0} {:>22}",
            workload.name,
            median(&without),
            median(&with),
            format!(
                "{:.2} ({:.2}–{:.2})",
                median(&ratios),
                min(&ratios),
                max(&ratios)
            )
        );
    }
    kernel_cost(&pod, workloads, &mut expected_execs)?;
    let cpu = cpu_seconds(agent_pid) - cpu_before;
    if !agent.daemon().terminate().success() {
        bail!("the agent did not stop cleanly:\n{}", agent.daemon().log());
    }
    let log = agent.daemon().log();
    let handled = |field: &str| -> u64 {
        log.lines()
            .filter(|l| l.contains("events handled"))
            .filter_map(|l| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(&format!("{field}=")))
            })
            .filter_map(|v| v.parse().ok())
            .next_back()
            .unwrap_or(0)
    };
    println!("\nagent CPU during the runs: {cpu:.2} s");
    // The probes' own execs are too few to say anything per event.
    if workloads.iter().any(|w| w.execs > 0) {
        let seen = handled("exec");
        #[expect(clippy::cast_precision_loss, reason = "a rate per thousand events")]
        let per_k = cpu * 1000.0 / seen.max(1) as f64 * 1000.0;
        println!(
            "exec events handled by the agent: {seen} of {expected_execs} expected; lost in the kernel: {}; {per_k:.1} ms of agent CPU per 1k events",
            handled("lost_exec")
        );
    }
    Ok(())
}

/// One more run of each workload in the pod with the kernel's program statistics on.
fn kernel_cost(
    pod: &SimPod,
    workloads: &[Workload],
    expected_execs: &mut u64,
) -> anyhow::Result<()> {
    println!("\ntime inside nodeward's eBPF programs (BPF_ENABLE_STATS, one run in the pod)\n");
    println!(
        "{:<52} {:<14} {:>12} {:>12}",
        "workload", "program", "calls", "ns/call"
    );
    for workload in workloads {
        let measurement = kernel_cost::Measurement::start()?;
        rate_of(&pod.probe(&workload.args), workload.name);
        *expected_execs += workload.execs + 1;
        for (program, calls, mean) in measurement.finish()? {
            println!(
                "{:<52} {:<14} {:>12} {:>12.0}",
                workload.name, program, calls, mean
            );
        }
    }
    Ok(())
}

fn rate_of(result: &ProbeResult, what: &str) -> f64 {
    match result.rate {
        Some(rate) if result.ok => rate,
        _ => panic!("{what} failed: {result:?}"),
    }
}

/// User plus system CPU time of a process, from /proc/<pid>/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of stat(5), 11 and 12 after the name.
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
        .sum();
    ticks / clock_ticks()
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn rand_bool() -> bool {
    use std::hash::BuildHasher as _;
    std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now()) & 1 == 1
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}
