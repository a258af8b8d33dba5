//! `cargo xtask bench <what>`: what nodeward costs the workloads it watches, measured as
//! the throughput of the same workload with nodeward and without, in one run, alternating
//! in random order (the method of ../shared/research-data/perf-anchors.md).
//!
//! `connect`: a TCP `connect()`+`close()` storm and a UDP `sendto()` storm to loopback. The
//! baseline runs as a node process (outside the pod cgroups); the measured run is a
//! hostNetwork pod, so both share one network namespace and differ only in the cgroup
//! that nodeward's IMDS programs (connect4/6, sendmsg4/6, skb egress) are attached to.

use anyhow::bail;
use clap::ValueEnum;
use nodeward_testkit::{
    PodSpec, ProbeResult, SimNode,
    stack::{AgentProcess, AgentSpec, CollectorProcess},
};

use crate::cmd::{self, cargo};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Bench {
    /// IMDS enforcement on `connect()` and UDP sends.
    Connect,
}

/// Repetitions per workload and side; the median is reported with min–max.
const REPETITIONS: usize = 5;

struct Workload {
    name: &'static str,
    args: [&'static str; 6],
}

const CONNECT_WORKLOADS: [Workload; 2] = [
    Workload {
        name: "TCP connect()+close(RST) to 127.0.0.1, 2 thr, 50k",
        args: ["storm", "connect", "--count", "50000", "--threads", "2"],
    },
    Workload {
        name: "UDP sendto() 64 B to 127.0.0.1, 2 thr, 200k",
        args: ["storm", "udp", "--count", "200000", "--threads", "2"],
    },
];

pub fn run(bench: Bench) -> anyhow::Result<()> {
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
        Bench::Connect => connect(),
    }
    Ok(())
}

fn connect() {
    let node = SimNode::builder()
        .pod(PodSpec::new("bench").host_network(true))
        .build();
    let pod = node.pod("bench");
    let collector = CollectorProcess::start(node.scratch_dir());
    let mut agent = AgentProcess::start(&node, &AgentSpec::new(&collector.endpoint()));
    agent.wait_active();
    let agent_pid = agent.daemon().pid();
    println!(
        "\nnodeward bench connect: throughput with nodeward's IMDS programs ÷ without, same run"
    );
    println!("({REPETITIONS} repetitions each, alternating in random order; median, min–max)\n");
    println!(
        "{:<52} {:>14} {:>14} {:>22}",
        "workload", "without (op/s)", "with (op/s)", "ratio"
    );
    let cpu_before = cpu_seconds(agent_pid);
    for workload in &CONNECT_WORKLOADS {
        let mut without = Vec::new();
        let mut with = Vec::new();
        for _ in 0..REPETITIONS {
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
    println!(
        "\nagent CPU during the runs: {:.2} s (it receives no events here: nothing touched the metadata service)",
        cpu_seconds(agent_pid) - cpu_before
    );
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
