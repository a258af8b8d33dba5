//! The walking skeleton, end to end on a simulated node: the agent blocks a pod's
//! connections to the instance metadata service over IPv4 and IPv6, leaves node processes
//! alone, and the collector delivers the finding to a SOC subscriber.

use std::time::{Duration, Instant};

use nodeward_testkit::{
    IMDS_V4, IMDS_V6, PodSpec, SimNode, require_root,
    stack::{AgentProcess, AgentSpec, CollectorProcess, TailProcess},
    wait_until,
};
use serde_json::Value;

/// How long the agent may take to load and attach its programs.
const ATTACH_DEADLINE: Duration = Duration::from_secs(30);

fn is_imds_finding(v: &Value, pod_uid: &str, address: &str) -> bool {
    v["finding"]["ruleId"] == "imds-access"
        && v["finding"]["pod"]["uid"] == pod_uid
        && v["finding"]["destination"]["address"] == address
}

#[test]
fn pod_imds_access_is_blocked_and_reaches_the_soc() {
    if !require_root("pod_imds_access_is_blocked_and_reaches_the_soc") {
        return;
    }
    let node = SimNode::builder()
        .pod(PodSpec::new("web").namespace("shop"))
        .build();
    let web = node.pod("web");
    let mut collector = CollectorProcess::start(node.scratch_dir());
    let mut tail = TailProcess::start(
        &collector.endpoint(),
        Some(0),
        &node.scratch_dir().join("tail.log"),
    );
    let mut agent = AgentProcess::start(&node, &AgentSpec::new(&collector.endpoint()));

    let v4_url = format!("http://{IMDS_V4}/latest/meta-data/");
    let v6_url = format!("http://[{IMDS_V6}]/latest/meta-data/");
    let denied_at = wait_until(
        ATTACH_DEADLINE,
        "the pod's IMDS connection to be refused",
        || {
            web.probe(&["connect", "--addr", &IMDS_V4.to_string(), "--port", "80"])
                .is_denied()
                .then(Instant::now)
        },
    );
    let requests_before = node.imds().request_count();

    for url in [&v4_url, &v6_url] {
        let got = web.probe(&["http-get", url]);
        assert!(
            got.is_denied(),
            "pod GET {url} should fail with EPERM, got {got:?}"
        );
    }
    assert_eq!(
        node.imds().request_count(),
        requests_before,
        "no pod request reached the metadata service"
    );

    for url in [&v4_url, &v6_url] {
        let got = node.host_probe(&["http-get", url]);
        assert_eq!(
            got.status,
            Some(200),
            "a node process (outside the pods) reads {url}: {got:?}"
        );
    }

    let v4 = tail.wait_for(Duration::from_secs(10), "for the pod's IPv4 attempt", |v| {
        is_imds_finding(v, web.uid(), &IMDS_V4.to_string())
    });
    let latency = denied_at.elapsed();
    assert!(
        latency < Duration::from_secs(2),
        "the SOC saw the first attempt {latency:?} after it was made"
    );
    let finding = &v4["finding"];
    assert_eq!(finding["severity"], "high");
    assert_eq!(finding["verdict"], "blocked");
    assert_eq!(finding["container"]["id"], web.container_id());
    assert_eq!(finding["destination"]["port"], 80);
    assert_eq!(finding["destination"]["protocol"], "tcp");
    assert_eq!(v4["nodeName"], agent.node_name());
    tail.wait_for(Duration::from_secs(10), "for the pod's IPv6 attempt", |v| {
        is_imds_finding(v, web.uid(), &IMDS_V6.to_string())
    });
    assert!(
        tail.seen()
            .iter()
            .all(|v| v["finding"]["pod"]["uid"] == web.uid()),
        "only the pod was reported"
    );

    assert!(
        agent.daemon().terminate().success(),
        "the agent exits cleanly on SIGTERM:\n{}",
        agent.daemon().log()
    );
    assert!(
        collector.daemon().terminate().success(),
        "the collector exits cleanly on SIGTERM"
    );
    let prefix = node.netns_prefix();
    let test_cgroup = node.test_cgroup().to_owned();
    drop((tail, agent, collector, node));

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
}
