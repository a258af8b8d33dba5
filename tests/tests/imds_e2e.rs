//! The walking skeleton, end to end on a simulated node: the agent blocks a pod's
//! connections to the instance metadata service over IPv4 and IPv6, leaves node processes
//! alone, the collector delivers the finding to a SOC subscriber within 2 seconds, and
//! nothing is left behind.

mod common;

use std::time::Duration;

use common::{Stack, http_get, metadata_url, wait_enforced};
use nodeward_testkit::{IMDS_V4, IMDS_V6, PodSpec, SimNode, require_root};

#[test]
fn pod_imds_access_is_blocked_and_reaches_the_soc() {
    if !require_root("pod_imds_access_is_blocked_and_reaches_the_soc") {
        return;
    }
    let node = SimNode::builder()
        .pod(PodSpec::new("web").namespace("shop"))
        .build();
    let mut stack = Stack::start(node, |s| s);
    let web = stack.node.pod("web");
    let denied_at = wait_enforced(&web);
    let requests_before = stack.node.imds().request_count();

    let (v4, v6) = (IMDS_V4.to_string(), IMDS_V6.to_string());
    for addr in [&v4, &v6] {
        let got = http_get(&web, &metadata_url(addr));
        assert!(
            got.is_denied(),
            "pod GET from {addr} should fail with EPERM, got {got:?}"
        );
    }
    assert_eq!(
        stack.node.imds().request_count(),
        requests_before,
        "no pod request reached the metadata service"
    );
    for addr in [&v4, &v6] {
        let got = stack.node.host_probe(&["http-get", &metadata_url(addr)]);
        assert_eq!(
            got.status,
            Some(200),
            "a node process (outside the pods) reads {addr}: {got:?}"
        );
    }

    let finding = stack.wait_imds_finding(&web, "for the pod's IPv4 attempt", |f| {
        f["destination"]["address"] == v4.as_str()
    });
    let latency = denied_at.elapsed();
    assert!(
        latency < Duration::from_secs(2),
        "the SOC saw the first attempt {latency:?} after it was made"
    );
    assert_eq!(finding["severity"], "high");
    assert_eq!(finding["verdict"], "blocked");
    assert_eq!(finding["container"]["id"], web.container_id());
    assert_eq!(finding["destination"]["port"], 80);
    assert_eq!(finding["destination"]["protocol"], "tcp");
    stack.wait_imds_finding(&web, "for the pod's IPv6 attempt", |f| {
        f["destination"]["address"] == v6.as_str()
    });
    let node_name = stack.agent.node_name().to_owned();
    assert!(
        stack
            .tail
            .seen()
            .iter()
            .all(|v| v["nodeName"] == node_name.as_str()),
        "reported as its node"
    );
    assert!(
        stack
            .tail
            .seen()
            .iter()
            .all(|v| v["finding"]["pod"]["uid"] == web.uid()),
        "only the pod was reported"
    );

    assert!(
        stack.agent.daemon().terminate().success(),
        "the agent exits cleanly on SIGTERM"
    );
    assert!(
        stack.collector.daemon().terminate().success(),
        "the collector exits cleanly on SIGTERM"
    );
    let prefix = stack.node.netns_prefix();
    let test_cgroup = stack.node.test_cgroup().to_owned();
    let bpffs = stack.node.bpffs().to_owned();
    drop(stack);

    let namespaces = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let namespaces = String::from_utf8_lossy(&namespaces.stdout);
    assert!(
        !namespaces.contains(&prefix),
        "namespaces left behind: {namespaces}"
    );
    assert!(
        !test_cgroup.exists(),
        "cgroup {} left behind",
        test_cgroup.display()
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(bpffs.to_str().unwrap()),
        "bpffs (and its pins) left mounted"
    );
}
