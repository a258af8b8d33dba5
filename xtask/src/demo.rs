//! `cargo xtask demo`: nodeward on a simulated EKS worker node, told the way a cluster
//! admin would follow it. It builds the node (namespaces, a kubelet-style cgroup tree, a
//! fake metadata service), shows a pod reading instance metadata, starts the collector,
//! a SOC subscriber and the agent, shows the same reads refused while node processes are
//! unaffected, prints the finding the SOC received, and removes everything.

use std::{
    os::unix::fs::MetadataExt as _,
    time::{Duration, Instant},
};

use anyhow::bail;
use nodeward_testkit::{
    IMDS_V4, IMDS_V6, POD_IDENTITY_V4, PodSpec, ProbeResult, SimNode, SimPod, poll_until,
    stack::{AgentProcess, AgentSpec, CollectorProcess, TailProcess},
};

use crate::cmd::{self, cargo};

pub fn run() -> anyhow::Result<()> {
    crate::setup::run()?;
    cmd::run(&mut cargo(&["build", "--bins"]))?;
    if !is_root() {
        bail!(
            "the demo creates network namespaces and cgroups and loads eBPF programs: run it as root"
        );
    }
    show();
    Ok(())
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|u| u.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The simulated node and nodeward around it; fields drop in order, node last.
struct Demo {
    agent: AgentProcess,
    spec: AgentSpec,
    tail: TailProcess,
    /// Kept running until the demo ends.
    _collector: CollectorProcess,
    node: SimNode,
}

fn v4_url() -> String {
    format!("http://{IMDS_V4}/latest/meta-data/iam/security-credentials/")
}

fn show() {
    heading("nodeward demo: pods must not reach the cloud's instance metadata service");
    let node = build_node();
    let mut demo = start_nodeward(node);
    demo.with_nodeward();
    demo.survive_a_kill();
    demo.what_the_soc_received();
    step(7, "Cleaning up");
    drop(demo);
    println!(
        "   Stopped the agent, the collector and the subscriber; removed the pinned programs, namespaces, cgroups and files."
    );
}

fn build_node() -> SimNode {
    let node = SimNode::builder()
        .pod(PodSpec::new("web").namespace("shop").service_account("web"))
        .pod(
            PodSpec::new("aws-node")
                .namespace("kube-system")
                .service_account("aws-node")
                .host_network(true),
        )
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
        &format!("an ordinary pod, uid {}", web.uid()),
    );
    line(
        "pod aws-node",
        "kube-system/aws-node, hostNetwork (like the VPC CNI), needs the metadata service",
    );
    line("kubelet", "a node process outside the pod cgroups");

    step(
        2,
        "Without nodeward, any pod can read the node's credentials",
    );
    attempt(
        "pod shop/web",
        &format!("GET {}", v4_url()),
        &web.probe(&["http-get", &v4_url()]),
    );
    node
}

fn start_nodeward(node: SimNode) -> Demo {
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
    let tail = TailProcess::start(
        &collector.endpoint(),
        Some(0),
        &node.scratch_dir().join("tail.log"),
    );
    line(
        "SOC subscriber",
        "nodeward-collector tail --since 0 --format json",
    );
    let started = Instant::now();
    let spec = AgentSpec::new(&collector.endpoint())
        .with_pods_file()
        .imds("allow:\n- namespace: kube-system\n  serviceAccount: aws-node");
    let mut agent = AgentProcess::start(&node, &spec);
    agent.wait_active();
    line(
        "agent",
        &format!(
            "node {}: IMDS enforcement on cgroup {} (mode enforce; allow kube-system/aws-node), active after {:.1?}",
            agent.node_name(),
            node.pod_cgroup_path().display(),
            started.elapsed()
        ),
    );
    Demo {
        agent,
        spec,
        tail,
        _collector: collector,
        node,
    }
}

impl Demo {
    fn with_nodeward(&self) {
        let (web, aws_node) = (self.node.pod("web"), self.node.pod("aws-node"));
        let v6_url = format!("http://[{IMDS_V6}]/latest/meta-data/iam/security-credentials/");
        let identity_url = format!("http://{POD_IDENTITY_V4}/v1/credentials");
        let v4 = IMDS_V4.to_string();
        step(4, "With nodeward");
        attempt(
            "pod shop/web",
            &format!("GET {}", v4_url()),
            &web.probe(&["http-get", &v4_url()]),
        );
        attempt(
            "pod shop/web",
            &format!("GET {v6_url}"),
            &web.probe(&["http-get", &v6_url]),
        );
        attempt(
            "pod shop/web",
            &format!("UDP datagram to {v4}:80"),
            &web.probe(&["udp-send", "--addr", &v4, "--port", "80"]),
        );
        let first = web.probe(&["raw-send", "--addr", &v4]);
        attempt(
            "pod shop/web",
            &format!("raw ICMP packet to {v4}, its first raw socket"),
            &first,
        );
        if first.ok {
            println!(
                "   {:<14} (dropped on the node as it left; the pod now gets its own packet hook)",
                ""
            );
        }
        self.wait_packet_hook(&web);
        attempt(
            "pod shop/web",
            &format!("raw ICMP packet to {v4}, again"),
            &web.probe(&["raw-send", "--addr", &v4]),
        );
        attempt(
            "pod shop/web",
            &format!("GET {identity_url} (EKS Pod Identity)"),
            &web.probe(&["http-get", &identity_url]),
        );
        attempt(
            "pod aws-node",
            &format!("GET {}", v4_url()),
            &aws_node.probe(&["http-get", &v4_url()]),
        );
        attempt(
            "kubelet",
            &format!("GET {}", v4_url()),
            &self.node.host_probe(&["http-get", &v4_url()]),
        );
        println!(
            "   Every way out of the pod was refused in the kernel: no packet reached the service."
        );
        println!(
            "   The allowlisted pod, EKS Pod Identity and node processes such as the kubelet are unaffected."
        );
    }

    /// Waits until the agent has put the packet hook on `pod` (it follows the pod's first
    /// raw socket within milliseconds).
    fn wait_packet_hook(&self, pod: &SimPod) {
        let cgroup = self.node.cgroup_root().join(pod.pod_cgroup_path());
        let Ok(id) = std::fs::metadata(&cgroup).map(|m| m.ino()) else {
            return;
        };
        let pin = self.spec.packet_hook_pin(&self.node, id);
        // The demo goes on either way; the next attempt shows which hook answered.
        let _ = poll_until(Duration::from_secs(10), || pin.exists());
    }

    fn survive_a_kill(&mut self) {
        step(5, "The agent is killed (SIGKILL)");
        self.agent.kill();
        let web = self.node.pod("web");
        attempt(
            "pod shop/web",
            &format!("GET {}", v4_url()),
            &web.probe(&["http-get", &v4_url()]),
        );
        println!("   Enforcement lives in the kernel (pinned programs), not in the agent process.");
        self.agent.restart();
        self.agent.wait_active();
        println!("   A new agent adopted the pinned programs, swapping in its own without a gap.");
    }

    fn what_the_soc_received(&mut self) {
        step(6, "What the SOC received");
        let uid = self.node.pod("web").uid().to_owned();
        let finding = self
            .tail
            .wait_for(Duration::from_secs(10), "for the pod", |v| {
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
        for kind in ["tried to connect", "sent a datagram", "raw socket"] {
            let _ = self.tail.wait_for(Duration::from_secs(10), kind, |v| {
                v["finding"]["pod"]["uid"] == uid.as_str()
                    && v["finding"]["summary"]
                        .as_str()
                        .is_some_and(|s| s.contains(kind))
            });
        }
        let for_web = self
            .tail
            .seen()
            .iter()
            .filter(|v| v["finding"]["pod"]["uid"] == uid.as_str())
            .count();
        let for_aws_node = self
            .tail
            .seen()
            .iter()
            .filter(|v| v["finding"]["pod"]["name"] == "aws-node")
            .count();
        println!(
            "   {for_web} findings for shop/web so far (TCP over IPv4 and IPv6, UDP, raw packets), {for_aws_node} for aws-node."
        );
        println!(
            "   Repeats of the same attempt (the one during the outage included) are counted and folded"
        );
        println!("   into one finding per container and destination each minute.");
    }
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

fn attempt(who: &str, what: &str, result: &ProbeResult) {
    let outcome = match (result.status, &result.error) {
        (Some(status), _) => format!("HTTP {status}: answered"),
        (None, None) if result.ok => "sent".to_owned(),
        (None, Some(_)) if result.is_denied() => "refused (Operation not permitted)".to_owned(),
        (None, error) => format!("failed: {}", error.as_deref().unwrap_or("unknown error")),
    };
    println!("   {who:<14} {what}\n   {:<14} → {outcome}", "");
}
