//! Frames written on a packet socket (`AF_PACKET`, which containerd's default `CAP_NET_RAW`
//! allows) pass no socket hook: an ordinary pod's cross its veth and the node forwards
//! them, a hostNetwork pod's go straight to the device. The node-side guard on the
//! interfaces that lead to the metadata service drops them, attributes them to the pod,
//! and lets through what allowlisted pods and the node itself send.

mod common;

use common::{ATTACH_DEADLINE, Stack, wait_enforced};
use nodeward_testkit::{
    IMDS_V4, IMDS_V6, PodSpec, ProbeResult, SimNode, SimPod, require_root, wait_until,
};

const ALLOW: &str = "allow:\n- podLabels:\n    nodeward.io/imds: allow";
const FRAMES: usize = 3;

/// Sends `FRAMES` UDP datagrams to IMDS port 80 as whole frames on a packet socket.
fn send_frames(pod: &SimPod) -> ProbeResult {
    probe(pod, &packet_send(&IMDS_V4.to_string(), &[]))
}

/// The same over IPv6, to `fd00:ec2::254`.
fn send_frames_v6(pod: &SimPod) -> ProbeResult {
    probe(pod, &packet_send(&IMDS_V6.to_string(), &[]))
}

fn packet_send(addr: &str, extra: &[&'static str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "packet-send",
        "--addr",
        addr,
        "--port",
        "80",
        "--count",
        &FRAMES.to_string(),
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    args.extend(extra.iter().map(ToString::to_string));
    args
}

fn probe(pod: &SimPod, args: &[String]) -> ProbeResult {
    pod.probe(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// ENOBUFS: what a packet socket's send returns when a tc program drops the frame.
const ENOBUFS: i32 = 105;

#[test]
fn raw_frames_to_imds_are_dropped_on_the_node_and_reported() {
    if !require_root("raw_frames_to_imds_are_dropped_on_the_node_and_reported") {
        return;
    }
    let node = SimNode::builder()
        .pod(PodSpec::new("web").namespace("shop"))
        .pod(
            PodSpec::new("cni")
                .namespace("kube-system")
                .host_network(true),
        )
        .pod(
            PodSpec::new("legacy")
                .namespace("ops")
                .label("nodeward.io/imds", "allow"),
        )
        .build();
    let mut stack = Stack::start(node, |s| s.with_pods_file().imds(ALLOW));
    let (web, cni, legacy) = (
        stack.node.pod("web"),
        stack.node.pod("cni"),
        stack.node.pod("legacy"),
    );
    wait_enforced(&web);
    // One interface of the simulated node leads to the metadata service (imds0).
    assert_eq!(
        stack.agent.metric("nodeward_imds_node_guard_interfaces"),
        Some(1.0)
    );
    assert_eq!(
        stack.agent.metric("nodeward_imds_node_guard_failing"),
        Some(0.0)
    );

    allowed_frames_arrive(&stack, &legacy);

    // Other pods' frames are dropped, whichever network they have.
    let before = stack.node.imds().udp_datagram_count();
    // The ordinary pod's frames leave it (the node drops them once forwarded); the
    // hostNetwork pod's are dropped on their way onto the device, which the sender sees.
    let sent = send_frames(&web);
    assert!(sent.ok, "{sent:?}");
    // Bypassing the pod's own queueing and tc changes nothing: the node forwards them.
    let sent = probe(
        &web,
        &packet_send(&IMDS_V4.to_string(), &["--qdisc-bypass"]),
    );
    assert!(sent.ok, "{sent:?}");
    let sent = send_frames_v6(&web);
    assert!(sent.ok, "{sent:?}");
    let sent = send_frames(&cni);
    assert_eq!(sent.errno, Some(ENOBUFS), "{sent:?}");
    let forwarded = stack.wait_imds_finding(&web, "frames forwarded from the pod", |f| {
        f["summary"]
            .as_str()
            .is_some_and(|s| s.contains("through node interface"))
    });
    let v6 = stack.wait_imds_finding(&web, "IPv6 frames forwarded from the pod", |f| {
        f["destination"]["address"] == IMDS_V6.to_string()
    });
    assert_eq!(v6["verdict"], "blocked", "{v6}");
    let socket = stack.wait_imds_finding(&cni, "frames from the hostNetwork pod", |f| {
        f["summary"]
            .as_str()
            .is_some_and(|s| s.contains("packet socket"))
    });
    for (pod, finding) in [(&web, &forwarded), (&cni, &socket)] {
        assert_eq!(finding["verdict"], "blocked", "{finding}");
        assert_eq!(finding["ruleId"], "imds-access", "{finding}");
        assert_eq!(finding["pod"]["uid"], pod.uid(), "{finding}");
        assert_eq!(finding["pod"]["name"], pod.name(), "{finding}");
        assert_eq!(finding["destination"]["protocol"], "udp", "{finding}");
        assert_eq!(finding["destination"]["port"], 80, "{finding}");
        assert!(
            finding["count"].as_u64().is_some_and(|c| c >= 1),
            "{finding}"
        );
    }
    stack.node.imds().settle();
    assert_eq!(
        stack.node.imds().udp_datagram_count(),
        before,
        "frames from pods that are not allowlisted reached the metadata service"
    );

    assert!(
        stack
            .tail
            .seen()
            .iter()
            .all(|v| v["finding"]["ruleId"] != "imds-node-guard"),
        "a working guard raises no health finding"
    );
    stays_through_a_restart(&mut stack, &web, before);
}

/// An allowlisted pod's frames arrive, over IPv4 and IPv6: the guard knows which node
/// interface is its. So do the node's own.
fn allowed_frames_arrive(stack: &Stack, legacy: &SimPod) {
    // (Waiting covers the guard's first pass after the pods file was read.)
    let before = stack.node.imds().udp_datagram_count();
    wait_until(
        ATTACH_DEADLINE,
        "the allowlisted pod's frames to arrive",
        || {
            let sent = send_frames(legacy);
            assert!(sent.ok, "{sent:?}");
            stack.node.imds().settle();
            (stack.node.imds().udp_datagram_count() >= before + FRAMES).then_some(())
        },
    );
    // Over IPv6 too: its address leads to the same node interface.
    let before = stack.node.imds().udp_datagram_count();
    let sent = send_frames_v6(legacy);
    assert!(sent.ok, "{sent:?}");
    wait_until(
        ATTACH_DEADLINE,
        "the allowlisted pod's IPv6 frames to arrive",
        || (stack.node.imds().udp_datagram_count() >= before + FRAMES).then_some(()),
    );

    // So do the node's own.
    let before = stack.node.imds().udp_datagram_count();
    let args = packet_send(&IMDS_V4.to_string(), &[]);
    let node_frames = stack
        .node
        .host_probe(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(node_frames.ok, "{node_frames:?}");
    wait_until(ATTACH_DEADLINE, "the node's own frames to arrive", || {
        (stack.node.imds().udp_datagram_count() >= before + FRAMES).then_some(())
    });
}

/// The links are pinned: with the agent killed, the node still drops the frames, and the
/// next agent adopts the links instead of stacking new ones.
fn stays_through_a_restart(stack: &mut Stack, web: &SimPod, before: usize) {
    stack.agent.kill();
    assert!(send_frames(web).ok);
    stack.node.imds().settle();
    assert_eq!(
        stack.node.imds().udp_datagram_count(),
        before,
        "frames got through while the agent was down"
    );
    stack.agent.restart();
    stack.agent.wait_active();
    let log = stack.agent.daemon().log();
    assert!(
        log.contains("adopted=[") && !log.contains("adopted=[]"),
        "the restarted agent adopts the pinned link:\n{log}"
    );
    assert_eq!(
        stack.agent.metric("nodeward_imds_node_guard_interfaces"),
        Some(1.0)
    );
}
