//! Enforcement does not depend on the agent process: killed with SIGKILL, pods stay
//! refused and allowed pods stay allowed; a restarted agent adopts the pinned links
//! (the program is replaced in place, never stacked) and reports what happened while it
//! was down; `uninstall` removes everything. Other programs on the same cgroup coexist.

mod common;

use std::process::Command;

use common::{Stack, connect, http_get, metadata_url, wait_enforced};
use nodeward_testkit::{
    IMDS_V4, PodSpec, SimNode,
    bpf::{AttachType, attached_programs},
    require_root,
    stack::AgentProcess,
    workspace_bin,
};

const HOOKS: [AttachType; 5] = [
    AttachType::Inet4Connect,
    AttachType::Inet6Connect,
    AttachType::Udp4Sendmsg,
    AttachType::Udp6Sendmsg,
    AttachType::InetSockCreate,
];

fn programs(node: &SimNode) -> Vec<Vec<u32>> {
    let pods = node.cgroup_root().join(node.pod_cgroup_path());
    HOOKS
        .iter()
        .map(|hook| attached_programs(&pods, *hook))
        .collect()
}

#[test]
fn enforcement_survives_sigkill_and_a_restart_adopts_it() {
    if !require_root("enforcement_survives_sigkill_and_a_restart_adopts_it") {
        return;
    }
    let node = SimNode::builder()
        .pod(PodSpec::new("web").namespace("shop"))
        .pod(
            PodSpec::new("aws-node")
                .namespace("kube-system")
                .service_account("aws-node"),
        )
        .build();
    let mut stack = Stack::start(node, |s| {
        s.with_pods_file()
            .imds("allow:\n- namespace: kube-system\n  serviceAccount: aws-node")
    });
    let (web, aws_node) = (stack.node.pod("web"), stack.node.pod("aws-node"));
    wait_enforced(&web);
    let imds = metadata_url(&IMDS_V4.to_string());
    assert_eq!(http_get(&aws_node, &imds).status, Some(200));
    let before = programs(&stack.node);
    assert!(
        before.iter().all(|ids| ids.len() == 1),
        "one program per hook: {before:?}"
    );

    assert!(!stack.agent.kill().success(), "SIGKILL");
    assert!(
        connect(&web, &IMDS_V4.to_string(), 80).is_denied(),
        "pods stay refused without the agent"
    );
    assert_eq!(
        http_get(&aws_node, &imds).status,
        Some(200),
        "allowed pods stay allowed without the agent"
    );
    let newcomer = stack.node.add_pod(PodSpec::new("newcomer"));
    assert!(
        connect(&newcomer, &IMDS_V4.to_string(), 80).is_denied(),
        "new pods are covered without the agent"
    );
    // An attempt while the agent is down, on a port nothing else uses, to find its report.
    assert!(connect(&web, &IMDS_V4.to_string(), 8088).is_denied());
    assert_eq!(
        programs(&stack.node),
        before,
        "nothing changed while the agent was away"
    );

    stack.agent.restart();
    stack.agent.wait_active();
    let after = programs(&stack.node);
    assert!(
        after.iter().all(|ids| ids.len() == 1),
        "still one program per hook after the restart: {after:?}"
    );
    assert_ne!(
        after, before,
        "the restarted agent's programs replaced the old ones in place"
    );
    assert!(connect(&web, &IMDS_V4.to_string(), 80).is_denied());
    assert_eq!(http_get(&aws_node, &imds).status, Some(200));
    stack.wait_imds_finding(&web, "for the attempt made while the agent was down", |f| {
        f["destination"]["port"] == 8088
    });

    // Uninstall: stop the agent, then remove what it left on the node.
    assert!(stack.agent.daemon().terminate().success());
    assert_eq!(
        programs(&stack.node),
        after,
        "a graceful stop leaves enforcement in place"
    );
    let out = Command::new(workspace_bin("nodeward-agent"))
        .arg("uninstall")
        .arg("--config")
        .arg(stack.agent.config())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "uninstall: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("detached"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        programs(&stack.node).iter().all(Vec::is_empty),
        "uninstall detaches every program"
    );
    assert_eq!(
        http_get(&web, &imds).status,
        Some(200),
        "and pods are no longer refused"
    );
}

#[test]
fn coexists_with_other_programs_on_the_pod_cgroup() {
    if !require_root("coexists_with_other_programs_on_the_pod_cgroup") {
        return;
    }
    let node = SimNode::builder().pod(PodSpec::new("web")).build();
    let stack = Stack::start(node, |s| s);
    let web = stack.node.pod("web");
    wait_enforced(&web);
    // A second, independent set of programs on the same cgroup (as Cilium or systemd
    // would attach): a second agent with its own pins.
    let mut other = AgentProcess::start(&stack.node, &stack.spec.clone().instance("other"));
    other.wait_active();
    let both = programs(&stack.node);
    assert!(
        both.iter().all(|ids| ids.len() == 2),
        "both sets attached side by side: {both:?}"
    );
    assert!(connect(&web, &IMDS_V4.to_string(), 80).is_denied());

    assert!(other.daemon().terminate().success());
    let out = Command::new(workspace_bin("nodeward-agent"))
        .arg("uninstall")
        .arg("--config")
        .arg(other.config())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let one = programs(&stack.node);
    assert!(
        one.iter().all(|ids| ids.len() == 1),
        "removing one set leaves the other: {one:?}"
    );
    assert!(
        connect(&web, &IMDS_V4.to_string(), 80).is_denied(),
        "still enforced by the first agent"
    );
}
