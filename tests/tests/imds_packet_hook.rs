//! The packet hook (`cgroup_skb/egress`) goes only on the pods that need it: those that
//! open a raw, ICMP or UDP-Lite socket, whose sends no socket call judges. A pod gets it
//! with its first such socket, and its other containers with it; the node-side guard
//! drops what that first socket sends to the metadata service before the hook is on.
//! Pods that never open one never pay for it. Sockets opened before the agent started
//! are found at start, hooks survive an agent restart, and a cgroup's hook goes with it.

mod common;

use std::{os::unix::fs::MetadataExt as _, path::Path, time::Duration};

use common::{
    ATTACH_DEADLINE, NODE_SIDE_OF_METADATA_LINK, Stack, connect, has_packet_hook, packet_hook_pin,
    raw_send, udp_send, wait_enforced,
};
use nodeward_testkit::{
    CgroupTree, IMDS_V4, IMDS_V6, PodSpec, ProcessGuard, SimNode, SimPod,
    bpf::{AttachType, attached_programs, pin_whole_cgroup_egress_link},
    probe_path, require_root,
    stack::AgentSpec,
    wait_until,
};

const METRIC: &str = "nodeward_imds_packet_guards";

#[test]
fn a_pod_gets_the_packet_hook_with_its_first_raw_socket_and_others_never_do() {
    if !require_root("a_pod_gets_the_packet_hook_with_its_first_raw_socket_and_others_never_do") {
        return;
    }
    let node = SimNode::builder()
        .pod(PodSpec::new("pinger").namespace("ops"))
        .pod(PodSpec::new("quiet").namespace("shop"))
        .build();
    let mut stack = Stack::start(node, AgentSpec::with_pods_file);
    let pinger = stack.node.pod("pinger");
    let quiet = stack.node.pod("quiet");
    wait_enforced(&pinger);
    wait_enforced(&quiet);
    assert!(!has_packet_hook(&stack, &pinger) && !has_packet_hook(&stack, &quiet));
    assert_eq!(stack.agent.metric(METRIC), Some(0.0));
    let pods = stack.node.cgroup_root().join(stack.node.pod_cgroup_path());
    let egress = |dir: &Path| attached_programs(dir, AttachType::InetEgress).len();
    assert_eq!(
        egress(&pods),
        0,
        "no packet hook on the pod cgroup as a whole"
    );
    assert_eq!(
        attached_programs(&pods, AttachType::InetSockCreate).len(),
        1,
        "the socket-creation hook asks for it"
    );

    // TCP and UDP, refused or not, ask for nothing.
    let v4 = IMDS_V4.to_string();
    assert!(connect(&quiet, &v4, 80).is_denied());
    assert!(udp_send(&quiet, &v4, "sendto").is_denied());
    assert!(udp_send(&quiet, NODE_SIDE_OF_METADATA_LINK, "sendto").ok);

    // The first raw socket: whatever the send returns (the hook may or may not be on by
    // then), the echo request never reaches the metadata service.
    let before = stack.node.imds().icmp_packet_count();
    let first = raw_send(&pinger, &v4);
    assert!(first.ok || first.is_denied(), "{first:?}");
    wait_until(ATTACH_DEADLINE, "the packet hook on pod ops/pinger", || {
        has_packet_hook(&stack, &pinger).then_some(())
    });
    let finding = stack.wait_imds_finding(&pinger, "the first raw socket's attempt", |f| {
        f["destination"]["address"] == v4.as_str()
    });
    assert_eq!(finding["verdict"], "blocked", "{finding}");

    // From now on the pod's own hook refuses at once, for every container of the pod.
    for (what, pod) in [
        ("the same container", pinger.clone()),
        ("a new container", pinger.add_container()),
    ] {
        for addr in [v4.clone(), IMDS_V6.to_string()] {
            let got = raw_send(&pod, &addr);
            assert!(got.is_denied(), "{what}: raw send to {addr}: {got:?}");
        }
    }
    let raw = stack.wait_imds_finding(&pinger, "a refusal by the pod's packet hook", |f| {
        f["summary"]
            .as_str()
            .is_some_and(|s| s.contains("a raw socket in"))
    });
    assert_eq!(raw["container"]["id"], pinger.container_id(), "{raw}");
    stack.node.imds().settle();
    assert_eq!(stack.node.imds().icmp_packet_count(), before);
    assert!(
        raw_send(&pinger, NODE_SIDE_OF_METADATA_LINK).ok,
        "other destinations stay reachable"
    );

    assert!(
        !has_packet_hook(&stack, &quiet),
        "pod shop/quiet opened no raw socket"
    );
    assert_eq!(stack.agent.metric(METRIC), Some(1.0));
    let cgroup = |pod: &SimPod| stack.node.cgroup_root().join(pod.pod_cgroup_path());
    assert_eq!(egress(&cgroup(&pinger)), 1, "one packet hook, on the pod");
    assert_eq!(egress(&cgroup(&quiet)), 0);
    assert_eq!(egress(&pods), 0);
}

#[test]
fn raw_sockets_opened_before_the_agent_are_found_and_hooks_outlive_it() {
    if !require_root("raw_sockets_opened_before_the_agent_are_found_and_hooks_outlive_it") {
        return;
    }
    let node = SimNode::builder()
        .pod(PodSpec::new("holder"))
        .pod(PodSpec::new("idle"))
        .build();
    let holder = node.pod("holder");
    // A daemon that keeps its raw socket open, started before any agent.
    let daemon = holder.spawn(
        probe_path().to_str().expect("UTF-8 path"),
        &[
            "raw-send",
            "--addr",
            NODE_SIDE_OF_METADATA_LINK,
            "--hold-ms",
            "600000",
        ],
    );
    wait_until(
        Duration::from_secs(10),
        "the daemon to open its raw socket",
        || holds_socket(&daemon).then_some(()),
    );

    let mut stack = Stack::start(node, |s| s);
    let holder = stack.node.pod("holder");
    let idle = stack.node.pod("idle");
    wait_enforced(&holder);
    assert!(
        has_packet_hook(&stack, &holder),
        "the agent guards the pod before it reports active"
    );
    assert!(!has_packet_hook(&stack, &idle));
    assert!(raw_send(&holder, &IMDS_V4.to_string()).is_denied());

    // The hook is pinned: it stays while no agent runs, and the next one adopts it.
    stack.agent.kill();
    assert!(has_packet_hook(&stack, &holder));
    assert!(raw_send(&holder, &IMDS_V4.to_string()).is_denied());
    stack.agent.restart();
    stack.agent.wait_active();
    assert!(has_packet_hook(&stack, &holder));
    assert!(raw_send(&holder, &IMDS_V4.to_string()).is_denied());
    assert_eq!(stack.agent.metric(METRIC), Some(1.0));
    assert!(
        stack
            .agent
            .daemon()
            .log()
            .contains("adopted pinned packet hooks"),
        "{}",
        stack.agent.daemon().log()
    );
    drop(daemon);
}

#[test]
fn a_cgroup_that_is_no_pod_gets_its_own_hook_which_ends_with_it() {
    if !require_root("a_cgroup_that_is_no_pod_gets_its_own_hook_which_ends_with_it") {
        return;
    }
    let node = SimNode::builder().pod(PodSpec::new("web")).build();
    let mut stack = Stack::start(node, |s| s);
    wait_enforced(&stack.node.pod("web"));
    // A cgroup straight below the pod cgroup that no pod's name is in.
    let dir = stack
        .node
        .cgroup_root()
        .join(stack.node.pod_cgroup_path())
        .join("stray");
    let cgroup = CgroupTree::create(dir.clone());
    let id = std::fs::metadata(&dir)
        .expect("stat the stray cgroup")
        .ino();
    let daemon = ProcessGuard::spawn(
        stack.node.command_in(probe_path(), cgroup.dir()).args([
            "raw-send",
            "--addr",
            NODE_SIDE_OF_METADATA_LINK,
            "--hold-ms",
            "600000",
        ]),
        "a raw-socket daemon in a stray cgroup",
    );
    let pin = packet_hook_pin(&stack, id);
    wait_until(
        ATTACH_DEADLINE,
        "the packet hook on the stray cgroup",
        || pin.exists().then_some(()),
    );
    assert!(!has_packet_hook(&stack, &stack.node.pod("web")));
    assert_eq!(stack.agent.metric(METRIC), Some(1.0));

    // The process ends and the cgroup is removed: the hook, its pin and its count go.
    drop(daemon);
    drop(cgroup);
    wait_until(ATTACH_DEADLINE, "the stray cgroup's pin to go", || {
        (!pin.exists()).then_some(())
    });
    assert_eq!(stack.agent.metric(METRIC), Some(0.0));
}

#[test]
fn the_whole_cgroup_packet_hook_of_an_earlier_agent_is_retired() {
    if !require_root("the_whole_cgroup_packet_hook_of_an_earlier_agent_is_retired") {
        return;
    }
    let node = SimNode::builder().pod(PodSpec::new("web")).build();
    let pods = node.cgroup_root().join(node.pod_cgroup_path());
    // Where the agent below pins (its default instance), as an earlier version left it.
    let links = node.bpffs().join("nodeward/v1/links");
    std::fs::create_dir_all(&links).expect("create the pin directory");
    pin_whole_cgroup_egress_link(&pods, &links.join("imds_egress"));
    assert_eq!(attached_programs(&pods, AttachType::InetEgress).len(), 1);

    let mut stack = Stack::start(node, |s| s);
    wait_enforced(&stack.node.pod("web"));
    assert!(!links.join("imds_egress").exists(), "the old pin is gone");
    assert!(
        attached_programs(&pods, AttachType::InetEgress).is_empty(),
        "and its link detached: no packet hook on the pod cgroup as a whole"
    );
    assert!(
        stack
            .agent
            .daemon()
            .log()
            .contains("replaced by per-pod hooks")
    );
}

/// Whether the process has a socket open.
fn holds_socket(process: &ProcessGuard) -> bool {
    std::fs::read_dir(format!("/proc/{}/fd", process.pid()))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| target.to_string_lossy().starts_with("socket:"))
}
