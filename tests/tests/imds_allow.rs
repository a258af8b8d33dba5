//! Who may reach the metadata service: allowlisted pods (by service account, by labels),
//! decided in the kernel by the pod's own cgroup, so a new container of an allowed pod is
//! allowed at once and a pod cannot claim to be another; everyone else is refused. And
//! the modes: audit lets attempts through but reports them; changes apply live, without
//! reattaching programs.

mod common;

use std::time::Duration;

use common::{ATTACH_DEADLINE, Stack, connect, http_get, metadata_url, wait_enforced};
use nodeward_testkit::{
    IMDS_V4, IMDS_V6, PodSpec, SimNode, SimPod,
    bpf::{AttachType, attached_programs},
    require_root, wait_until,
};

const ALLOW: &str = "allow:\n- namespace: kube-system\n  serviceAccount: aws-node\n- podLabels:\n    nodeward.io/imds: allow";

fn reaches_imds(pod: &SimPod) -> bool {
    http_get(pod, &metadata_url(&IMDS_V4.to_string())).status == Some(200)
}

#[test]
fn allowlisted_pods_reach_imds_and_others_do_not() {
    if !require_root("allowlisted_pods_reach_imds_and_others_do_not") {
        return;
    }
    let node = SimNode::builder()
        .pod(
            PodSpec::new("aws-node")
                .namespace("kube-system")
                .service_account("aws-node")
                .host_network(true),
        )
        .pod(
            PodSpec::new("agent")
                .namespace("monitoring")
                .label("nodeward.io/imds", "allow"),
        )
        .pod(
            PodSpec::new("impostor")
                .namespace("shop")
                .service_account("aws-node"),
        )
        .pod(PodSpec::new("web").namespace("shop"))
        .build();
    let mut stack = Stack::start(node, |s| s.with_pods_file().imds(ALLOW));
    let (aws_node, agent, impostor, web) = (
        stack.node.pod("aws-node"),
        stack.node.pod("agent"),
        stack.node.pod("impostor"),
        stack.node.pod("web"),
    );
    wait_enforced(&web);

    for pod in [&aws_node, &agent] {
        assert!(reaches_imds(pod), "{} is allowlisted", pod.name());
        let v6 = http_get(pod, &metadata_url(&IMDS_V6.to_string()));
        assert_eq!(v6.status, Some(200), "{} over IPv6: {v6:?}", pod.name());
    }
    // The right service account in the wrong namespace is not enough.
    assert!(
        connect(&impostor, &IMDS_V4.to_string(), 80).is_denied(),
        "impostor"
    );
    assert!(connect(&web, &IMDS_V4.to_string(), 80).is_denied(), "web");
    assert_eq!(
        stack
            .node
            .host_probe(&["http-get", &metadata_url(&IMDS_V4.to_string())])
            .status,
        Some(200),
        "node process"
    );

    // A container started later in an allowed pod is allowed at once (no waiting: the
    // kernel finds the pod's cgroup among the new container's ancestors).
    let sidecar = agent.add_container();
    assert!(reaches_imds(&sidecar), "new container in an allowed pod");
    let web_sidecar = web.add_container();
    assert!(
        connect(&web_sidecar, &IMDS_V4.to_string(), 80).is_denied(),
        "new container in a refused pod"
    );

    // A pod created later becomes allowed once its metadata arrives.
    let late = stack.node.add_pod(
        PodSpec::new("aws-node-2")
            .namespace("kube-system")
            .service_account("aws-node"),
    );
    assert!(
        connect(&late, &IMDS_V4.to_string(), 80).is_denied(),
        "unknown pods start refused"
    );
    stack.agent.write_pods(&stack.node);
    wait_until(
        Duration::from_secs(10),
        "the new aws-node pod to be allowed",
        || reaches_imds(&late).then_some(()),
    );

    // Allowed pods are not reported; refused ones are.
    stack.wait_imds_finding(&impostor, "for the impostor", |f| f["verdict"] == "blocked");
    assert!(
        stack
            .tail
            .seen()
            .iter()
            .all(|v| v["finding"]["pod"]["uid"] != aws_node.uid()
                && v["finding"]["pod"]["uid"] != agent.uid()),
        "allowlisted pods produced findings: {:#?}",
        stack.tail.seen()
    );
}

#[test]
fn audit_reports_without_refusing_and_modes_change_live() {
    if !require_root("audit_reports_without_refusing_and_modes_change_live") {
        return;
    }
    let node = SimNode::builder()
        .pod(PodSpec::new("web").namespace("shop"))
        .build();
    let mut stack = Stack::start(node, |s| s.with_pods_file().imds("mode: audit"));
    let web = stack.node.pod("web");

    // Audit: the connection goes through, and the finding says it would have been refused.
    let audited = wait_until(ATTACH_DEADLINE, "an audited attempt to be reported", || {
        assert!(reaches_imds(&web), "audit mode must not refuse");
        stack
            .tail
            .try_find(|v| v["finding"]["verdict"] == "audited")
    });
    assert_eq!(audited["finding"]["pod"]["name"], "web");
    assert!(
        audited["finding"]["summary"]
            .as_str()
            .unwrap()
            .contains("allowed by audit mode")
    );

    let pods = stack.node.cgroup_root().join(stack.node.pod_cgroup_path());
    let programs = || {
        [
            AttachType::Inet4Connect,
            AttachType::Inet6Connect,
            AttachType::Udp4Sendmsg,
            AttachType::Udp6Sendmsg,
            AttachType::InetSockCreate,
        ]
        .map(|hook| attached_programs(&pods, hook))
    };
    let before = programs();
    assert!(
        before.iter().all(|ids| ids.len() == 1),
        "one program per hook: {before:?}"
    );

    let spec = stack.spec.clone().imds("mode: enforce");
    stack.agent.rewrite_config(&stack.node, &spec);
    wait_until(Duration::from_secs(10), "enforce to take effect", || {
        connect(&web, &IMDS_V4.to_string(), 80)
            .is_denied()
            .then_some(())
    });
    stack.wait_imds_finding(&web, "a blocked attempt after the switch", |f| {
        f["verdict"] == "blocked"
    });

    let spec = stack.spec.clone().imds("mode: off");
    stack.agent.rewrite_config(&stack.node, &spec);
    wait_until(Duration::from_secs(10), "off to take effect", || {
        reaches_imds(&web).then_some(())
    });
    assert_eq!(programs(), before, "mode changes do not reattach programs");

    // A broken edit is refused as a whole and the running mode stays.
    std::fs::write(
        stack.agent.config(),
        "imds: {mode: enforce, blockedCidrs: [nonsense]}\n",
    )
    .unwrap();
    wait_until(
        Duration::from_secs(10),
        "the agent to refuse the broken edit",
        || {
            stack
                .agent
                .daemon()
                .log()
                .contains("configuration change ignored")
                .then_some(())
        },
    );
    assert!(reaches_imds(&web), "a broken config is not half-applied");
    assert!(
        stack.agent.daemon().is_running(),
        "and does not stop the agent"
    );
}

#[test]
fn blocked_prefixes_change_live() {
    if !require_root("blocked_prefixes_change_live") {
        return;
    }
    let node = SimNode::builder()
        .pod(PodSpec::new("web").namespace("shop"))
        .build();
    let stack = Stack::start(node, nodeward_testkit::stack::AgentSpec::with_pods_file);
    let web = stack.node.pod("web");
    wait_enforced(&web);
    // The simulated metadata service's link address: nothing listens there, so a
    // connection is refused by the peer (not by nodeward) until its prefix is blocked.
    // Its first byte is one no default prefix starts with, so the prefilter must change.
    let (link, imds) = ("10.254.0.2", IMDS_V4.to_string());
    let peer_refused = |got: &nodeward_testkit::ProbeResult| !got.ok && !got.is_denied();
    assert!(peer_refused(&connect(&web, link, 80)));

    let spec = stack
        .spec
        .clone()
        .imds("blockedCidrs: [169.254.169.254/32, fd00:ec2::254/128, 10.254.0.0/16]");
    stack.agent.rewrite_config(&stack.node, &spec);
    wait_until(
        Duration::from_secs(10),
        "the new prefix to be blocked",
        || connect(&web, link, 80).is_denied().then_some(()),
    );
    assert!(connect(&web, &imds, 80).is_denied(), "the old ones stay");

    let spec = stack.spec.clone().imds("mode: enforce");
    stack.agent.rewrite_config(&stack.node, &spec);
    wait_until(Duration::from_secs(10), "the prefix to be released", || {
        peer_refused(&connect(&web, link, 80)).then_some(())
    });
    assert!(connect(&web, &imds, 80).is_denied(), "the defaults stay");
}
