//! `sensors.hostProcesses`: the egress sensor also records where node processes connect,
//! through record-only programs on the node's cgroup (the cgroup2 root on a real node;
//! here the test's own cgroup, which holds the simulated node's pods and its kubelet
//! cgroup), and the egress rules judge them as node processes. Pods keep their identity:
//! their calls are the pod programs' to record.

mod common;

use common::{FINDING_DEADLINE, Stack};
use nodeward_testkit::{PodSpec, SimNode, require_root, stack::AgentSpec};
use serde_json::Value;

fn miner_finding(stack: &mut Stack, port: u64) -> Value {
    let what = format!("miner-pool-connection to port {port}");
    stack.tail.wait_for(FINDING_DEADLINE, &what, |v| {
        v["finding"]["ruleId"] == "miner-pool-connection"
            && v["finding"]["destination"]["port"] == port
    })["finding"]
        .clone()
}

#[test]
fn node_processes_connections_are_judged_and_pods_keep_their_identity() {
    if !require_root("node_processes_connections_are_judged_and_pods_keep_their_identity") {
        return;
    }
    let node = SimNode::builder()
        .pod(PodSpec::new("web").namespace("shop"))
        .build();
    let node_cgroup = node
        .test_cgroup()
        .strip_prefix(node.cgroup_root())
        .expect("the test cgroup lies below the cgroup2 mount")
        .to_owned();
    let yaml = format!(
        "sensors:\n  hostProcesses: true\n  hostCgroupPath: {}\n",
        node_cgroup.display()
    );
    let mut stack = Stack::start(node, |s| AgentSpec::with_pods_file(s).extra_yaml(&yaml));
    assert!(
        stack.agent.daemon().log().contains(r#"scope="node""#),
        "the egress sensor watches the node:\n{}",
        stack.agent.daemon().log()
    );

    // A node process (in the simulated kubelet's cgroup) to a stratum port on loopback:
    // refused, as nothing listens there, but the attempt is what is recorded.
    let _ = stack
        .node
        .host_probe(&["connect", "--addr", "127.0.0.1", "--port", "4444"]);
    let host = miner_finding(&mut stack, 4444);
    assert_eq!(host["destination"]["address"], "127.0.0.1");
    assert!(
        host["pod"]["uid"].as_str().unwrap_or_default().is_empty(),
        "a node process has no pod: {host}"
    );
    assert_eq!(host["process"]["comm"], "nodeward-probe");
    assert!(
        host["summary"]
            .as_str()
            .is_some_and(|s| s.contains("a node process")),
        "{host}"
    );

    // A pod's connection is still attributed to the pod.
    let web = stack.node.pod("web");
    let gateway = web.ipv4().map(|ip| {
        let [a, b, c, d] = ip.octets();
        std::net::Ipv4Addr::new(a, b, c, d - 1).to_string()
    });
    let gateway = gateway.expect("an ordinary pod has an address");
    let _ = web.probe(&["connect", "--addr", &gateway, "--port", "3333"]);
    let pod = miner_finding(&mut stack, 3333);
    assert_eq!(pod["pod"]["uid"], web.uid());
    assert_eq!(pod["pod"]["namespace"], "shop");
    assert_eq!(pod["count"], 1, "{pod}");
}
