//! The agent does its job with exactly the capabilities its DaemonSet grants, read from
//! deploy/base/agent.yaml: started as root with every other capability out of its
//! bounding set (as a container runtime starts it) and with `RLIMIT_MEMLOCK` at 64 KiB,
//! it attaches IMDS enforcement and the sensors, refuses a pod, and sees the pod's execs;
//! in the node's network namespace it also runs the node-side guard.
//! A capability added to the manifest that the agent does not need, or one the agent
//! needs that the manifest lacks, shows here.

mod common;

use std::time::Duration;

use common::{FINDING_DEADLINE, Stack, connect, wait_enforced};
use nodeward_testkit::{IMDS_V4, PodSpec, SimNode, poll_until, require_root, wait_until};
use serde_json::Value;

/// `capability.h` numbers of the capabilities a manifest may name.
const CAPABILITY_BITS: [(&str, u32); 9] = [
    ("DAC_OVERRIDE", 1),
    ("DAC_READ_SEARCH", 2),
    ("NET_ADMIN", 12),
    ("NET_RAW", 13),
    ("SYS_PTRACE", 19),
    ("SYS_ADMIN", 21),
    ("SYS_RESOURCE", 24),
    ("PERFMON", 38),
    ("BPF", 39),
];

/// 64 KiB: far below what the maps and ring buffers take (the exec ring alone is 4 MiB),
/// so the agent only starts if the kernel charges them to the memory cgroup.
const MEMLOCK_BYTES: &str = "65536";

/// `capabilities.add` of the agent container in deploy/base/agent.yaml.
fn daemonset_capabilities() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/base/agent.yaml");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let daemonset: Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let containers = daemonset["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap_or_else(|| panic!("{path}: no containers"));
    let agent = containers
        .iter()
        .find(|c| c["name"] == "agent")
        .unwrap_or_else(|| panic!("{path}: no container named agent"));
    agent["securityContext"]["capabilities"]["add"]
        .as_array()
        .unwrap_or_else(|| panic!("{path}: the agent container adds no capabilities"))
        .iter()
        .map(|c| c.as_str().expect("a capability name").to_owned())
        .collect()
}

fn bit(name: &str) -> u32 {
    CAPABILITY_BITS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("capability {name} is not in this test's table"))
        .1
}

/// The effective capability mask of a running process.
fn effective_caps(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .expect("CapEff in /proc/<pid>/status")
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

/// The DaemonSet's capabilities, their mask, and a launcher that starts the agent with
/// only those in its bounding set and a 64 KiB `RLIMIT_MEMLOCK`.
fn confined() -> (Vec<String>, u64, Vec<String>) {
    let caps = daemonset_capabilities();
    let expected_mask = caps.iter().fold(0u64, |mask, c| mask | 1 << bit(c));
    let bounding = std::iter::once("-all".to_owned())
        .chain(caps.iter().map(|c| format!("+{}", c.to_ascii_lowercase())))
        .collect::<Vec<_>>()
        .join(",");
    let launcher = [
        "prlimit".to_owned(),
        format!("--memlock={MEMLOCK_BYTES}:{MEMLOCK_BYTES}"),
        "setpriv".to_owned(),
        "--inh-caps=-all".to_owned(),
        "--bounding-set".to_owned(),
        bounding,
        "--".to_owned(),
    ];
    (caps, expected_mask, launcher.to_vec())
}

#[test]
fn the_agent_works_with_only_the_daemonsets_capabilities() {
    if !require_root("the_agent_works_with_only_the_daemonsets_capabilities") {
        return;
    }
    let (caps, expected_mask, launcher) = confined();
    let launcher: Vec<&str> = launcher.iter().map(String::as_str).collect();

    let node = SimNode::builder().pod(PodSpec::new("web")).build();
    let mut stack = Stack::start(node, |s| s.launcher(&launcher));
    let pid = stack.agent.daemon().pid();
    assert_eq!(
        effective_caps(pid),
        expected_mask,
        "the agent runs with exactly {caps:?}"
    );

    let web = stack.node.pod("web");
    wait_enforced(&web);
    assert!(
        connect(&web, &IMDS_V4.to_string(), 80).is_denied(),
        "the pod is refused"
    );

    let series = r#"nodeward_events_total{source="exec"}"#;
    let before = stack.agent.metric(series).unwrap_or(0.0);
    let storm = web.probe(&["storm", "exec", "--count", "20", "--threads", "1"]);
    assert!(storm.ok, "{storm:?}");
    assert!(
        poll_until(Duration::from_secs(10), || {
            stack.agent.metric(series).unwrap_or(0.0) >= before + 21.0
        }),
        "the exec sensor reports the pod's execs:\n{}",
        stack.agent.daemon().log()
    );

    // The simulated node's network namespace is not the agent's, and joining it would
    // take CAP_SYS_ADMIN: the node-side guard says it cannot run, and nothing else suffers.
    // (Deployed with hostNetwork, the namespace is the agent's own and no join is needed.)
    assert_eq!(
        stack.agent.metric("nodeward_imds_node_guard_failing"),
        Some(1.0),
        "{}",
        stack.agent.daemon().log()
    );
    // And the SOC is told, once, with what to do about it.
    let health = wait_until(FINDING_DEADLINE, "the node guard's health finding", || {
        stack
            .tail
            .try_find(|v| v["finding"]["ruleId"] == "imds-node-guard")
    });
    let summary = health["finding"]["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("cannot run") && summary.contains("hostNetwork"),
        "{health}"
    );
    assert_eq!(health["finding"]["category"], "health", "{health}");
}

/// Deployed with `components/node-guard`, the agent runs in the node's network namespace:
/// there the node-side guard attaches with the same five capabilities (`CAP_BPF` and
/// `CAP_NET_ADMIN` for the tcx links; no `CAP_SYS_ADMIN`, as no namespace is joined) and
/// drops a pod's raw frames. The agent cannot reach the collector from the simulated
/// node's namespace, so this reads its log, not its findings.
#[test]
fn the_node_guard_attaches_with_only_the_daemonsets_capabilities() {
    if !require_root("the_node_guard_attaches_with_only_the_daemonsets_capabilities") {
        return;
    }
    let node = SimNode::builder().pod(PodSpec::new("web")).build();
    let netns = format!("--net={}", node.node_netns().path().display());
    let (caps, expected_mask, confined) = confined();
    let launcher: Vec<&str> = ["nsenter", netns.as_str()]
        .into_iter()
        .chain(confined.iter().map(String::as_str))
        .collect();
    let mut stack = Stack::start(node, |s| s.with_pods_file().launcher(&launcher));
    let pid = stack.agent.daemon().pid();
    assert_eq!(
        effective_caps(pid),
        expected_mask,
        "the agent runs with exactly {caps:?}"
    );
    let log = stack.agent.daemon().log();
    assert!(
        log.contains("node-side IMDS guard on the interfaces") && !log.contains("guard failed"),
        "{log}"
    );

    let web = stack.node.pod("web");
    wait_enforced(&web);
    let before = stack.node.imds().udp_datagram_count();
    let sent = web.probe(&[
        "packet-send",
        "--addr",
        &IMDS_V4.to_string(),
        "--port",
        "80",
        "--count",
        "3",
    ]);
    assert!(sent.ok, "{sent:?}");
    stack.node.imds().settle();
    assert_eq!(
        stack.node.imds().udp_datagram_count(),
        before,
        "the pod's raw frames reached the metadata service:\n{}",
        stack.agent.daemon().log()
    );
}
