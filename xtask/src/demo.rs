//! `cargo xtask demo`: nodeward on a simulated EKS worker node, told the way a cluster
//! admin would follow it. It builds the node (namespaces, a kubelet-style cgroup tree, a
//! fake metadata service), shows a pod reading instance metadata, starts the collector,
//! a SOC subscriber and the agent, shows the same reads refused while node processes are
//! unaffected, prints the finding the SOC received, and removes everything.

use std::time::{Duration, Instant};

use anyhow::bail;
use nodeward_testkit::{
    IMDS_V4, IMDS_V6, PodSpec, ProbeResult, SimNode,
    stack::{AgentProcess, AgentSpec, CollectorProcess, TailProcess},
    wait_until,
};

use crate::cmd::{self, cargo};

pub fn run() -> anyhow::Result<()> {
    crate::setup::run()?;
    cmd::run(&mut cargo(&["build", "--bins"]))?;
    if !nix_is_root() {
        bail!(
            "the demo creates network namespaces and cgroups and loads eBPF programs: run it as root"
        );
    }
    show();
    Ok(())
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|u| u.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn show() {
    let v4_url = format!("http://{IMDS_V4}/latest/meta-data/iam/security-credentials/");
    let v6_url = format!("http://[{IMDS_V6}]/latest/meta-data/iam/security-credentials/");

    heading("nodeward demo: pods must not reach the cloud's instance metadata service");
    let node = SimNode::builder()
        .pod(PodSpec::new("web").namespace("shop").service_account("web"))
        .build();
    let web = node.pod("web");
    step(
        1,
        "A simulated EKS worker node, made of namespaces and cgroups created for this demo",
    );
    line(
        "node network",
        &format!("network namespace {}node", node.netns_prefix()),
    );
    line(
        "metadata service",
        &format!(
            "{IMDS_V4} and [{IMDS_V6}] (simulated, in {}imds)",
            node.netns_prefix()
        ),
    );
    line(
        "pod shop/web",
        &format!("uid {}, cgroup {}", web.uid(), web.cgroup_path().display()),
    );
    line("kubelet", "a node process outside the pod cgroups");

    step(
        2,
        "Without nodeward, any pod can read the node's credentials",
    );
    attempt("pod shop/web", &v4_url, &web.probe(&["http-get", &v4_url]));

    step(3, "Starting nodeward");
    let collector = CollectorProcess::start(node.scratch_dir());
    line(
        "collector",
        &format!(
            "{} (gRPC), findings in {} (SQLite)",
            collector.endpoint(),
            collector.database().display()
        ),
    );
    // From the start of the (fresh) store, so the subscriber cannot miss what happens
    // while it is still connecting.
    let mut tail = TailProcess::start(
        &collector.endpoint(),
        Some(0),
        &node.scratch_dir().join("tail.log"),
    );
    line(
        "SOC subscriber",
        "nodeward-collector tail --since 0 --format json",
    );
    let started = Instant::now();
    let agent = AgentProcess::start(&node, &AgentSpec::new(&collector.endpoint()));
    let probe_v4 = ["connect", "--addr", &IMDS_V4.to_string(), "--port", "80"].map(str::to_owned);
    wait_until(Duration::from_secs(30), "the agent to enforce", || {
        let args: Vec<&str> = probe_v4.iter().map(String::as_str).collect();
        web.probe(&args).is_denied().then_some(())
    });
    line(
        "agent",
        &format!(
            "node {}: IMDS enforcement on cgroup {} (mode enforce), active after {:.1?}",
            agent.node_name(),
            node.pod_cgroup_path().display(),
            started.elapsed()
        ),
    );

    step(4, "With nodeward");
    attempt("pod shop/web", &v4_url, &web.probe(&["http-get", &v4_url]));
    attempt("pod shop/web", &v6_url, &web.probe(&["http-get", &v6_url]));
    attempt("kubelet", &v4_url, &node.host_probe(&["http-get", &v4_url]));
    println!(
        "   The pod's connections were refused inside its own kernel call: no packet left it."
    );
    println!("   Node processes such as the kubelet still reach the metadata service.");

    step(5, "What the SOC received");
    let uid = web.uid().to_owned();
    let finding = tail.wait_for(Duration::from_secs(10), "for the pod", |v| {
        v["finding"]["pod"]["uid"] == uid.as_str()
    });
    if let Some(delay) = report_delay(&finding) {
        println!(
            "   (the collector stored the pod's first attempt {delay} after the kernel refused it)"
        );
    }
    let pretty = serde_json::to_string_pretty(&finding).unwrap_or_default();
    for l in pretty.lines() {
        println!("   {l}");
    }

    step(6, "Cleaning up");
    drop((tail, agent, collector, node));
    println!(
        "   Stopped the agent, the collector and the subscriber; removed the namespaces, cgroups and files."
    );
}

/// `receivedTime - finding.time` of a printed finding, e.g. "4 ms".
fn report_delay(record: &serde_json::Value) -> Option<String> {
    let time = |v: &serde_json::Value| v.as_str()?.parse::<jiff::Timestamp>().ok();
    let delay = time(&record["receivedTime"])?.duration_since(time(&record["finding"]["time"])?);
    Some(format!("{} ms", delay.as_millis()))
}

fn heading(text: &str) {
    println!("\n{text}\n{}", "=".repeat(text.len()));
}

fn step(n: u32, text: &str) {
    println!("\n{n}. {text}");
}

fn line(what: &str, detail: &str) {
    println!("   {what:<18} {detail}");
}

fn attempt(who: &str, url: &str, result: &ProbeResult) {
    let outcome = match (result.status, &result.error) {
        (Some(status), _) => {
            format!("HTTP {status}: metadata (and the node role's credentials) readable")
        }
        (None, Some(_)) if result.is_denied() => "refused (Operation not permitted)".to_owned(),
        (None, error) => format!("failed: {}", error.as_deref().unwrap_or("unknown error")),
    };
    println!("   {who:<14} GET {url}\n   {:<14} → {outcome}", "");
}
