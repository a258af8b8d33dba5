//! `cargo xtask bench <what>`: what nodeward costs the workloads it watches, measured as
//! the throughput of the same workload with nodeward and without, in one run, alternating
//! in random order (the method of ../shared/research-data/perf-anchors.md).
//!
//! The baseline runs as a node process (outside the pod cgroups); the measured run is a
//! hostNetwork pod, so both share one network namespace and differ only in the cgroup:
//! nodeward's programs (IMDS enforcement and the egress sensor on sockets, the exec sensor
//! filtered to the pod cgroup) only act on the pod's side. The agent runs with its default
//! configuration throughout. `--against bpftrace` adds a third side: the baseline again
//! with bpftrace running (see `bench/bpftrace.rs`), so nodeward and the anchors' monitor
//! are compared on the same machine at the same time.
//!
//! - `connect`: a TCP `connect()`+`close()` storm and a UDP `sendto()` storm to loopback.
//! - `exec`: fork+exec storms of /bin/true (two workers, and one with a core left idle),
//!   the connect storm and a service-like mix of execs, connects, sends and reads, with
//!   the agent's CPU time and the exec events it handled against the number expected.
//! - `collector`: the collector under many simulated agents (see `bench/collector.rs`).

mod bpftrace;
mod collector;
mod kernel_cost;

use std::fmt::Write as _;

use anyhow::{Context as _, bail};
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

/// A monitor measured beside nodeward in the same run.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Reference {
    /// bpftrace printing every exec and `connect()` from the syscall tracepoints (the
    /// anchors' "bpftrace, printf per event"); installed from Debian's packages if absent.
    Bpftrace,
}

/// How `connect` and `exec` run.
pub struct Options<'a> {
    /// Top-level YAML appended to the agent's config.
    pub agent_yaml: Option<&'a str>,
    /// Runs of each workload per side; [`DEFAULT_REPETITIONS`] when not given.
    pub repetitions: Option<usize>,
    pub against: Option<Reference>,
}

const DEFAULT_REPETITIONS: usize = 5;

impl Options<'_> {
    /// The options given that only `connect` and `exec` take.
    fn given(&self) -> Vec<&'static str> {
        [
            ("--agent-yaml", self.agent_yaml.is_some()),
            ("--repetitions", self.repetitions.is_some()),
            ("--against", self.against.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect()
    }
}

/// Where a workload runs: outside the pod cgroups with nothing watching it, in the pod
/// with nodeward, or outside again with the reference monitor running.
#[derive(Clone, Copy)]
enum Side {
    Without = 0,
    Nodeward = 1,
    Reference = 2,
}

impl Side {
    /// The sides of one repetition in random order.
    fn shuffled(with_reference: bool) -> Vec<Self> {
        let mut sides = vec![Self::Without, Self::Nodeward];
        if with_reference {
            sides.push(Self::Reference);
        }
        let mut bits = random();
        // Fisher–Yates with a few bits of one random word per step.
        for i in (1..sides.len()).rev() {
            let j = usize::try_from(bits % (i as u64 + 1)).unwrap_or(0);
            bits /= i as u64 + 1;
            sides.swap(i, j);
        }
        sides
    }
}

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
    options: &Options<'_>,
    collector_args: &CollectorArgs,
) -> anyhow::Result<()> {
    if let Bench::Collector = bench {
        let given = options.given();
        if !given.is_empty() {
            bail!(
                "{} apply to `bench connect` and `bench exec`; `bench collector` has its own options (--help)",
                given.join(", ")
            );
        }
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
    match bench {
        Bench::Connect => measure("connect", &[CONNECT, UDP], options),
        Bench::Exec => measure("exec", &[EXEC_STORM, EXEC_ONE, CONNECT, MIX], options),
        Bench::Collector => unreachable!("measured above"),
    }
}

/// Runs each workload `repetitions` times per side, the sides in random order each time;
/// the median is reported with min–max.
fn measure(what: &str, workloads: &[Workload], options: &Options<'_>) -> anyhow::Result<()> {
    crate::interrupt::catch()?;
    let reference = match options.against {
        Some(Reference::Bpftrace) => Some(bpftrace::Bpftrace::prepare()?),
        None => None,
    };
    let node = SimNode::builder()
        .pod(PodSpec::new("bench").host_network(true))
        .build();
    let pod = node.pod("bench");
    let collector = CollectorProcess::start(node.scratch_dir());
    let mut spec = AgentSpec::new(&collector.endpoint());
    if let Some(yaml) = options.agent_yaml {
        println!("agent config += {yaml}");
        spec = spec.extra_yaml(&format!("\n{yaml}\n"));
    }
    let mut agent = AgentProcess::start(&node, &spec);
    agent.wait_active();
    let agent_pid = agent.daemon().pid();
    let repetitions = options.repetitions.unwrap_or(DEFAULT_REPETITIONS);
    println!("\nnodeward bench {what}: throughput with nodeward ÷ without, same run");
    println!("({repetitions} repetitions each, sides in random order; median, min–max)\n");
    let mut header = format!(
        "{:<52} {:>14} {:>14} {:>22}",
        "workload", "without (op/s)", "with (op/s)", "ratio"
    );
    if reference.is_some() {
        write!(header, " {:>22} {:>14}", "bpftrace ratio", "bpftrace saw")?;
    }
    println!("{header}");
    let cpu_before = cpu_seconds(agent_pid);
    let mut expected_execs = 0;
    for workload in workloads {
        compare(workload, &node, &pod, reference.as_ref(), repetitions)?;
        // The probe's own exec is seen too, once per run in the pod.
        expected_execs += (workload.execs + 1) * repetitions as u64;
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

/// One workload's row: `repetitions` runs per side, the sides in random order each time.
fn compare(
    workload: &Workload,
    node: &SimNode,
    pod: &SimPod,
    reference: Option<&bpftrace::Bpftrace>,
    repetitions: usize,
) -> anyhow::Result<()> {
    let mut rates: [Vec<f64>; 3] = Default::default();
    let mut reference_events = 0;
    for _ in 0..repetitions {
        for side in Side::shuffled(reference.is_some()) {
            let result = match side {
                Side::Without => node.host_probe(&workload.args),
                Side::Nodeward => pod.probe(&workload.args),
                Side::Reference => {
                    let monitor = reference
                        .context("a reference side without a reference monitor")?
                        .start()?;
                    let result = node.host_probe(&workload.args);
                    reference_events += monitor.stop();
                    result
                }
            };
            // A probe cut short by the signal fails: report the interruption instead.
            crate::interrupt::check()?;
            rates[side as usize].push(rate_of(&result, workload.name));
        }
    }
    let [without, with, referenced] = &rates;
    let mut line = format!(
        "{:<52} {:>14.0} {:>14.0} {:>22}",
        workload.name,
        median(without),
        median(with),
        spread(&ratios(with, without)),
    );
    if reference.is_some() {
        write!(
            line,
            " {:>22} {:>14}",
            spread(&ratios(referenced, without)),
            reference_events
        )?;
    }
    println!("{line}");
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
        let result = pod.probe(&workload.args);
        crate::interrupt::check()?;
        rate_of(&result, workload.name);
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

fn random() -> u64 {
    use std::hash::BuildHasher as _;
    std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now())
}

fn ratios(with: &[f64], without: &[f64]) -> Vec<f64> {
    with.iter().zip(without).map(|(w, b)| w / b).collect()
}

/// Median with min–max.
fn spread(ratios: &[f64]) -> String {
    format!(
        "{:.2} ({:.2}–{:.2})",
        median(ratios),
        min(ratios),
        max(ratios)
    )
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

#[cfg(test)]
mod tests {
    use super::{Options, Reference, Side};

    #[test]
    fn options_for_connect_and_exec_only_are_named_when_given() {
        let none = Options {
            agent_yaml: None,
            repetitions: None,
            against: None,
        };
        assert!(none.given().is_empty());
        let some = Options {
            agent_yaml: Some("sensors: {egress: false}"),
            repetitions: None,
            against: Some(Reference::Bpftrace),
        };
        assert_eq!(some.given(), ["--agent-yaml", "--against"]);
    }

    #[test]
    fn every_side_runs_once_per_repetition_in_every_order() {
        let mut orders = std::collections::BTreeSet::new();
        for _ in 0..600 {
            let sides: Vec<usize> = Side::shuffled(true)
                .into_iter()
                .map(|s| s as usize)
                .collect();
            let mut sorted = sides.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2], "each side exactly once: {sides:?}");
            orders.insert(sides);
        }
        // All 3! orders turn up, so no side always goes first or last.
        assert_eq!(orders.len(), 6, "{orders:?}");
        let pair: Vec<usize> = Side::shuffled(false)
            .into_iter()
            .map(|s| s as usize)
            .collect();
        assert!(pair == [0, 1] || pair == [1, 0], "{pair:?}");
    }
}
