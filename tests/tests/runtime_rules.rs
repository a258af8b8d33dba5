//! Every built-in runtime rule, end to end on the simulated node: a real process in a pod
//! does what the rule is about and the finding reaches the SOC with the pod and the rule;
//! a look-alike that must not fire runs just before it. Findings reach the SOC in the
//! order the agent made them, so once the real one has arrived, a finding from the
//! look-alike would have arrived already.

mod common;

use std::path::Path;

use common::Stack;
use nodeward_testkit::{PodSpec, SimNode, SimPod, require_root, stack::AgentSpec};
use serde_json::Value;

/// Runs `program args` in `pod` to completion (its exit status does not matter here).
fn run(pod: &SimPod, program: &str, args: &[&str]) {
    let status = pod
        .command(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    status.unwrap_or_else(|e| panic!("running {program} {args:?} in {}: {e}", pod.name()));
}

/// A copy of /bin/true named `name` in `dir`, to stand for a tool the host lacks.
fn stand_in(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    std::fs::copy("/bin/true", &path).unwrap();
    path.display().to_string()
}

fn args_of(finding: &Value) -> String {
    finding["process"]["args"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

struct Case {
    rule: &'static str,
    look_alike: Vec<String>,
    real: Vec<String>,
    /// A substring of the real process's argv, to recognise its finding.
    marker: &'static str,
}

fn case(rule: &'static str, look_alike: &[&str], real: &[&str], marker: &'static str) -> Case {
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
    Case {
        rule,
        look_alike: owned(look_alike),
        real: owned(real),
        marker,
    }
}

#[test]
fn every_builtin_rule_fires_on_its_behaviour_and_not_on_a_look_alike() {
    if !require_root("every_builtin_rule_fires_on_its_behaviour_and_not_on_a_look_alike") {
        return;
    }
    let node = SimNode::builder()
        .pod(PodSpec::new("web").namespace("shop").service_account("web"))
        .build();
    let mut stack = Stack::start(node, AgentSpec::with_pods_file);
    let web = stack.node.pod("web");
    let tools = stack.node.scratch_dir().join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    let kubectl = stand_in(&tools, "kubectl");
    let kubectl_docs = stand_in(&tools, "kubectl-docs");
    let payload = stand_in(
        Path::new(&std::env::temp_dir()),
        &format!("nodeward-payload-{}", std::process::id()),
    );
    let _cleanup = RemoveOnDrop(payload.clone());

    let cases = [
        case(
            "shell-in-container",
            &["sh", "-c", "echo no-tty-shell"],
            &["script", "-qec", "sh -c 'echo tty-shell'", "/dev/null"],
            "tty-shell",
        ),
        case(
            "package-manager-in-container",
            &["apt-cache", "--version"],
            &["apt-get", "--version"],
            "apt-get",
        ),
        case(
            "reverse-shell",
            &["bash", "-c", "echo /dev/null > /dev/null"],
            &["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9"],
            "/dev/tcp/",
        ),
        case(
            "download-and-execute",
            &["sh", "-c", "curl -s http://127.0.0.1:9/health"],
            &["sh", "-c", "curl -s http://127.0.0.1:9/i.sh | sh"],
            "| sh",
        ),
        case(
            "exec-from-writable-dir",
            &["/bin/ls", "/tmp"],
            &[payload.as_str()],
            "nodeward-payload",
        ),
        case(
            "k8s-client-in-container",
            &[kubectl_docs.as_str(), "get", "pods"],
            &[kubectl.as_str(), "get", "secrets"],
            "secrets",
        ),
    ];
    for case in &cases {
        check_case(&mut stack, &web, case);
    }
}

/// The egress rule: a connect to a mining pool port (the node's side of the pod link;
/// refused, but the attempt is what counts) and, first, to a port next to it.
#[test]
fn miner_pool_rule_fires_on_a_stratum_port_and_not_on_its_neighbour() {
    if !require_root("miner_pool_rule_fires_on_a_stratum_port_and_not_on_its_neighbour") {
        return;
    }
    let node = SimNode::builder()
        .pod(PodSpec::new("web").namespace("shop"))
        .build();
    let mut stack = Stack::start(node, AgentSpec::with_pods_file);
    let web = stack.node.pod("web");
    let gateway = web.ipv4().map(|ip| {
        let [a, b, c, d] = ip.octets();
        std::net::Ipv4Addr::new(a, b, c, d - 1).to_string()
    });
    let gateway = gateway.expect("an ordinary pod has an address");
    let _ = web.probe(&["connect", "--addr", &gateway, "--port", "3344"]);
    let _ = web.probe(&["connect", "--addr", &gateway, "--port", "3333"]);
    let finding = stack
        .tail
        .wait_for(common::FINDING_DEADLINE, "miner-pool-connection", |v| {
            v["finding"]["ruleId"] == "miner-pool-connection"
        });
    let finding = &finding["finding"];
    assert_eq!(
        (
            finding["destination"]["port"].as_u64(),
            finding["destination"]["address"].as_str()
        ),
        (Some(3333), Some(gateway.as_str()))
    );
    assert_eq!(finding["pod"]["uid"], web.uid());
    assert_eq!(finding["process"]["comm"], "nodeward-probe");
    assert!(
        !stack
            .tail
            .seen()
            .iter()
            .any(|v| v["finding"]["destination"]["port"] == 3344),
        "port 3344 is not a mining pool port"
    );
}

/// Runs a case's look-alike, then the real thing, and checks the finding.
fn check_case(stack: &mut Stack, web: &SimPod, case: &Case) {
    run(
        web,
        &case.look_alike[0],
        &case.look_alike[1..]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    run(
        web,
        &case.real[0],
        &case.real[1..]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let finding = stack
        .tail
        .wait_for(common::FINDING_DEADLINE, case.rule, |v| {
            v["finding"]["ruleId"] == case.rule && args_of(&v["finding"]).contains(case.marker)
        });
    let finding = &finding["finding"];
    assert_eq!(finding["pod"]["uid"], web.uid(), "{}", case.rule);
    assert_eq!(finding["pod"]["namespace"], "shop", "{}", case.rule);
    assert_eq!(
        finding["container"]["id"],
        web.container_id(),
        "{}",
        case.rule
    );
    assert_eq!(finding["category"], "runtime");
    assert!(
        finding["techniques"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "{finding}"
    );
    let look_alike = case.look_alike.join(" ");
    assert!(
        !stack
            .tail
            .seen()
            .iter()
            .any(|v| v["finding"]["ruleId"] == case.rule && args_of(&v["finding"]) == look_alike),
        "{} fired on its look-alike `{look_alike}`",
        case.rule
    );
}

struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn findings_name_the_parent_process() {
    if !require_root("findings_name_the_parent_process") {
        return;
    }
    let node = SimNode::builder()
        .pod(PodSpec::new("web").namespace("shop"))
        .build();
    let mut stack = Stack::start(node, AgentSpec::with_pods_file);
    let web = stack.node.pod("web");
    // bash runs apt-get as a child: the finding names bash as the parent.
    run(&web, "bash", &["-c", "apt-get --version; true"]);
    let finding = stack.tail.wait_for(
        common::FINDING_DEADLINE,
        "a package manager under bash",
        |v| v["finding"]["ruleId"] == "package-manager-in-container",
    );
    assert!(
        finding["finding"]["parent"]["binary"]
            .as_str()
            .is_some_and(|b| b.ends_with("bash")),
        "{finding}"
    );
    assert_eq!(
        finding["finding"]["process"]["ppid"],
        finding["finding"]["parent"]["pid"]
    );
}
