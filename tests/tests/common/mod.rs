//! The nodeward stack on a simulated node, as the end-to-end tests use it: collector,
//! SOC subscriber and agent, plus the probes pods run.
#![allow(dead_code, reason = "each test file uses a different part")]

use std::{
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use nodeward_testkit::{
    IMDS_V4, ProbeResult, SimNode, SimPod, cgroup2_mount,
    stack::{AgentProcess, AgentSpec, CollectorProcess, TailProcess},
    wait_until,
};
use serde_json::Value;

/// How long the agent may take to load and attach its programs.
pub const ATTACH_DEADLINE: Duration = Duration::from_secs(30);
/// How long a finding may take to reach the SOC subscriber in these tests (the 2 s goal
/// is asserted separately where it is the point).
pub const FINDING_DEADLINE: Duration = Duration::from_secs(15);

/// Collector, SOC subscriber and agent around a node. Fields drop in order: the agent and
/// the services stop before the node (and its bpffs, cgroups and namespaces) goes away.
pub struct Stack {
    pub agent: AgentProcess,
    pub tail: TailProcess,
    pub collector: CollectorProcess,
    pub spec: AgentSpec,
    pub node: SimNode,
}

impl Stack {
    /// Starts everything; `spec` gets the collector endpoint and returns the agent's spec.
    pub fn start(node: SimNode, spec: impl FnOnce(AgentSpec) -> AgentSpec) -> Self {
        let collector = CollectorProcess::start(node.scratch_dir());
        let tail = TailProcess::start(
            &collector.endpoint(),
            Some(0),
            &node.scratch_dir().join("tail.log"),
        );
        let spec = spec(AgentSpec::new(&collector.endpoint()));
        let mut agent = AgentProcess::start(&node, &spec);
        agent.wait_active();
        Self {
            agent,
            tail,
            collector,
            spec,
            node,
        }
    }

    /// Waits for an `imds-access` finding about `pod` for which `extra` holds; returns the
    /// finding (the record's `finding` member).
    pub fn wait_imds_finding(
        &mut self,
        pod: &SimPod,
        what: &str,
        extra: impl Fn(&Value) -> bool,
    ) -> Value {
        let uid = pod.uid().to_owned();
        let record = self.tail.wait_for(FINDING_DEADLINE, what, |v| {
            v["finding"]["ruleId"] == "imds-access"
                && v["finding"]["pod"]["uid"] == uid.as_str()
                && extra(&v["finding"])
        });
        record["finding"].clone()
    }
}

/// Waits until `pod`'s connections to IMDS are refused; returns when that was seen.
pub fn wait_enforced(pod: &SimPod) -> Instant {
    wait_until(
        ATTACH_DEADLINE,
        "IMDS enforcement to refuse the pod",
        || {
            connect(pod, &IMDS_V4.to_string(), 80)
                .is_denied()
                .then(Instant::now)
        },
    )
}

pub fn connect(pod: &SimPod, addr: &str, port: u16) -> ProbeResult {
    pod.probe(&[
        "connect",
        "--addr",
        addr,
        "--port",
        &port.to_string(),
        "--timeout-ms",
        "2000",
    ])
}

pub fn http_get(pod: &SimPod, url: &str) -> ProbeResult {
    pod.probe(&["http-get", url, "--timeout-ms", "3000"])
}

pub fn udp_send(pod: &SimPod, addr: &str, mode: &str) -> ProbeResult {
    pod.probe(&["udp-send", "--addr", addr, "--port", "80", "--mode", mode])
}

pub fn tcp_fastopen(pod: &SimPod, addr: &str) -> ProbeResult {
    pod.probe(&["tcp-fastopen", "--addr", addr, "--port", "80"])
}

pub fn raw_send(pod: &SimPod, addr: &str) -> ProbeResult {
    pod.probe(&["raw-send", "--addr", addr])
}

/// Where the agent pins the packet hook of the cgroup with this id.
pub fn packet_hook_pin(stack: &Stack, cgroup_id: u64) -> PathBuf {
    stack.spec.packet_hook_pin(&stack.node, cgroup_id)
}

/// The id of `pod`'s pod-level cgroup, where its packet hook goes.
pub fn pod_cgroup_id(pod: &SimPod) -> u64 {
    let dir = cgroup2_mount().join(pod.pod_cgroup_path());
    std::fs::metadata(&dir)
        .unwrap_or_else(|e| panic!("stat {}: {e}", dir.display()))
        .ino()
}

/// Whether the agent has put the packet hook on `pod`'s cgroup.
pub fn has_packet_hook(stack: &Stack, pod: &SimPod) -> bool {
    packet_hook_pin(stack, pod_cgroup_id(pod)).exists()
}

/// Has `pod` open its first raw socket (an echo request to the node's side of the
/// metadata link, which it may reach) and waits for the agent to put the packet hook on
/// the pod. Until then the node-side guard judges such sockets' packets, and drops those
/// to the metadata service without `EPERM`.
pub fn arm_packet_hook(stack: &Stack, pod: &SimPod) {
    let got = raw_send(pod, NODE_SIDE_OF_METADATA_LINK);
    assert!(got.ok, "{}: raw-send to the node: {got:?}", pod.name());
    wait_until(ATTACH_DEADLINE, "the packet hook on the pod", || {
        has_packet_hook(stack, pod).then_some(())
    });
}

/// An address pods may reach on the metadata link's network (the node's end of it).
pub const NODE_SIDE_OF_METADATA_LINK: &str = "10.254.0.1";

/// The URL of the metadata service at `addr`.
pub fn metadata_url(addr: &str) -> String {
    if addr.contains(':') {
        format!("http://[{addr}]/latest/meta-data/")
    } else {
        format!("http://{addr}/latest/meta-data/")
    }
}
