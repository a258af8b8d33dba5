//! Every way out of a pod towards the metadata service is refused, for an ordinary pod and
//! for a hostNetwork pod, with nothing arriving at the (simulated) service; addresses next
//! to it stay reachable; node processes are untouched; and every attempt is reported.

mod common;

use common::{
    NODE_SIDE_OF_METADATA_LINK, Stack, arm_packet_hook, connect, http_get, metadata_url, raw_send,
    tcp_fastopen, udp_send, wait_enforced,
};
use nodeward_testkit::{
    IMDS_V4, IMDS_V6, POD_IDENTITY_V4, POD_IDENTITY_V6, PodSpec, SimNode, SimPod, require_root,
};

fn check_refused(pod: &SimPod) {
    let (v4, v6) = (IMDS_V4.to_string(), IMDS_V6.to_string());
    let mapped = format!("::ffff:{v4}");
    let attempts = [
        ("TCP connect over IPv4", connect(pod, &v4, 80)),
        ("TCP connect over IPv6", connect(pod, &v6, 80)),
        (
            "TCP connect to the IPv4-mapped address",
            connect(pod, &mapped, 80),
        ),
        ("HTTP GET over IPv4", http_get(pod, &metadata_url(&v4))),
        ("HTTP GET over IPv6", http_get(pod, &metadata_url(&v6))),
        ("TCP Fast Open over IPv4", tcp_fastopen(pod, &v4)),
        ("TCP Fast Open over IPv6", tcp_fastopen(pod, &v6)),
        ("UDP sendto over IPv4", udp_send(pod, &v4, "sendto")),
        ("UDP sendto over IPv6", udp_send(pod, &v6, "sendto")),
        (
            "UDP sendto to the IPv4-mapped address",
            udp_send(pod, &mapped, "sendto"),
        ),
        ("UDP connect then send", udp_send(pod, &v4, "connect")),
        ("UDP sendmsg", udp_send(pod, &v4, "sendmsg")),
        ("UDP sendmmsg over IPv6", udp_send(pod, &v6, "sendmmsg")),
        ("raw ICMP over IPv4", raw_send(pod, &v4)),
        ("raw ICMPv6", raw_send(pod, &v6)),
    ];
    for (what, got) in attempts {
        assert!(
            got.is_denied(),
            "{} ({}): {what} should fail with EPERM, got {got:?}",
            pod.name(),
            pod.uid()
        );
    }
}

fn check_reachable(pod: &SimPod) {
    for addr in [POD_IDENTITY_V4.to_string(), POD_IDENTITY_V6.to_string()] {
        let got = http_get(pod, &metadata_url(&addr));
        assert_eq!(
            got.status,
            Some(200),
            "{} must still reach EKS Pod Identity at {addr}: {got:?}",
            pod.name()
        );
    }
    // Any other destination: the node side of the metadata link.
    let got = raw_send(pod, NODE_SIDE_OF_METADATA_LINK);
    assert!(
        got.ok,
        "{} must still reach other addresses: {got:?}",
        pod.name()
    );
}

#[test]
fn every_path_to_imds_is_refused_for_ordinary_and_host_network_pods() {
    if !require_root("every_path_to_imds_is_refused_for_ordinary_and_host_network_pods") {
        return;
    }
    let node = SimNode::builder()
        .pod(PodSpec::new("web").namespace("shop").service_account("web"))
        .pod(
            PodSpec::new("node-exporter")
                .namespace("monitoring")
                .host_network(true),
        )
        .build();
    let mut stack = Stack::start(node, common_spec);
    let web = stack.node.pod("web");
    let exporter = stack.node.pod("node-exporter");
    wait_enforced(&web);
    wait_enforced(&exporter);
    // Raw sockets get `EPERM` from the pod's own packet hook, which follows its first
    // one; `imds_packet_hook.rs` shows what happens before.
    arm_packet_hook(&stack, &web);
    arm_packet_hook(&stack, &exporter);

    let imds = stack.node.imds();
    let before = (
        imds.request_count(),
        imds.udp_datagram_count(),
        imds.icmp_packet_count(),
    );
    check_refused(&web);
    check_refused(&exporter);
    let imds = stack.node.imds();
    assert_eq!(
        (
            imds.request_count(),
            imds.udp_datagram_count(),
            imds.icmp_packet_count()
        ),
        before,
        "nothing from the pods reached the metadata service"
    );

    check_reachable(&web);
    check_reachable(&exporter);
    for addr in [IMDS_V4.to_string(), IMDS_V6.to_string()] {
        let got = stack.node.host_probe(&["http-get", &metadata_url(&addr)]);
        assert_eq!(
            got.status,
            Some(200),
            "node processes reach the metadata service at {addr}: {got:?}"
        );
    }

    // Reported, with the pod's metadata, for each kind of hook.
    for pod in [&web, &exporter] {
        let host_network = pod.is_host_network();
        for (what, protocol) in [("a TCP attempt", "tcp"), ("a UDP attempt", "udp")] {
            let finding =
                stack.wait_imds_finding(pod, what, |f| f["destination"]["protocol"] == protocol);
            assert_eq!(finding["verdict"], "blocked");
            assert_eq!(finding["pod"]["namespace"], pod.namespace());
            assert_eq!(finding["pod"]["name"], pod.name());
            assert_eq!(finding["pod"]["hostNetwork"], host_network);
            assert_eq!(finding["container"]["id"], pod.container_id());
            // pid and comm come from the kernel; the binary is read from /proc when the
            // report is handled, which a process that exits at once may have left already.
            assert_eq!(finding["process"]["comm"], "nodeward-probe", "{finding}");
            assert!(
                finding["process"]["pid"]
                    .as_u64()
                    .is_some_and(|pid| pid > 0),
                "{finding}"
            );
            assert!(
                finding["process"]["binary"]
                    .as_str()
                    .is_none_or(|b| b.ends_with("nodeward-probe")),
                "{finding}"
            );
        }
        let raw = stack.wait_imds_finding(pod, "a raw packet", |f| {
            f["summary"]
                .as_str()
                .is_some_and(|s| s.contains("raw socket"))
        });
        assert_eq!(raw["verdict"], "blocked");
    }
}

fn common_spec(spec: nodeward_testkit::stack::AgentSpec) -> nodeward_testkit::stack::AgentSpec {
    spec.with_pods_file()
}

#[test]
fn pods_created_after_the_agent_are_covered_at_once() {
    if !require_root("pods_created_after_the_agent_are_covered_at_once") {
        return;
    }
    let node = SimNode::builder().pod(PodSpec::new("first")).build();
    let stack = Stack::start(node, |s| s);
    wait_enforced(&stack.node.pod("first"));
    // No waiting: the programs sit on the pod cgroup, so a new pod is covered the moment
    // its cgroup exists.
    for (name, host_network) in [("later", false), ("later-host", true)] {
        let pod = stack
            .node
            .add_pod(PodSpec::new(name).host_network(host_network));
        let got = connect(&pod, &IMDS_V4.to_string(), 80);
        assert!(got.is_denied(), "{name}: {got:?}");
    }
}
