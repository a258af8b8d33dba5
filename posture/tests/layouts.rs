//! Real distribution layouts: what nodeward concludes on each, check by check.

mod support;

use nodeward_posture::Status::{self, Fail, Pass, Warn};
use support::layouts;

/// (layout, check, verdict): the verdicts that characterise each layout.
const EXPECTED: &[(&str, &str, Status)] = &[
    ("eks-al2", "kubelet-anonymous-auth", Pass),
    ("eks-al2", "kubelet-read-only-port", Pass),
    ("eks-al2", "kubelet-hostname-override", Fail),
    ("eks-al2", "kubelet-tls-cipher-suites", Fail),
    ("eks-al2", "kubelet-rotate-certificates", Pass),
    ("eks-al2", "kubelet-kubeconfig-permissions-644", Pass),
    ("eks-al2", "kubelet-kubeconfig-permissions", Fail),
    ("eks-al2", "kubelet-client-cert-expiry", Pass),
    ("eks-al2", "kubelet-serving-cert-expiry", Pass),
    ("eks-al2", "kubelet-private-key-permissions", Pass),
    ("eks-al2023", "kubelet-anonymous-auth", Pass),
    ("eks-al2023", "kubelet-read-only-port", Pass),
    ("eks-al2023", "kubelet-seccomp-default", Pass),
    ("eks-al2023", "kubelet-pod-pids-limit", Pass),
    ("eks-al2023", "kubelet-tls-cipher-suites", Pass),
    ("eks-al2023", "kubelet-hostname-override", Pass),
    ("eks-al2023", "kubelet-config-permissions-644", Pass),
    ("kubeadm", "kubelet-anonymous-auth", Pass),
    ("kubeadm", "kubelet-streaming-connection-idle-timeout", Pass),
    ("kubeadm", "kubelet-config-permissions", Fail),
    ("kubeadm", "kubelet-kubeconfig-permissions", Pass),
    ("kubeadm", "kubelet-tls-cert-files", Fail),
    ("kubeadm", "kubelet-rotate-server-certificate", Warn),
    ("kubeadm", "kubelet-serving-cert-expiry", Pass),
    ("kubeadm", "kubelet-client-cert-expiry", Pass),
    ("kubeadm", "kubelet-private-key-permissions", Pass),
    ("kubeadm", "kubelet-service-file-permissions", Fail),
    ("bottlerocket", "kubelet-anonymous-auth", Pass),
    ("bottlerocket", "kubelet-pod-pids-limit", Pass),
    ("bottlerocket", "kubelet-seccomp-default", Fail),
    ("bottlerocket", "kubelet-pki-dir-permissions", Pass),
    ("bottlerocket", "kubelet-service-file-ownership", Pass),
    ("flags-only", "kubelet-anonymous-auth", Fail),
    ("flags-only", "kubelet-authorization-mode", Fail),
    ("flags-only", "kubelet-read-only-port", Fail),
    ("flags-only", "kubelet-client-ca-file", Pass),
    ("flags-only", "kubelet-rotate-certificates", Pass),
    ("flags-only", "kubelet-config-permissions", Pass),
];

#[test]
fn each_layout_is_judged_as_its_kubelet_runs() {
    let mut wrong = Vec::new();
    for fixture in layouts::all() {
        let report = fixture.scan();
        for (_, id, want) in EXPECTED.iter().filter(|(l, _, _)| *l == fixture.name) {
            let check = report.check(id);
            if check.status != *want {
                wrong.push(format!(
                    "{} {id}: want {want:?}, got {:?}: {} [{}]",
                    fixture.name, check.status, check.observed, check.source
                ));
            }
        }
        // Nothing on a well-formed layout is an error.
        for check in report.0.checks.iter().filter(|c| c.status == Status::Error) {
            wrong.push(format!(
                "{} {}: error: {}",
                fixture.name, check.id, check.observed
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn json_report_has_node_and_checks() {
    let fixture = layouts::eks_al2();
    let report = fixture.scan();
    let json = serde_json::to_value(&report.0).expect("serialize");
    assert!(json["node"].is_string());
    let checks = json["checks"].as_array().expect("checks array");
    assert_eq!(checks.len(), nodeward_posture::catalogue().len());
    for field in [
        "id",
        "title",
        "benchmarks",
        "status",
        "observed",
        "expected",
        "source",
        "remediation",
    ] {
        assert!(
            checks.iter().all(|c| !c[field].is_null()),
            "{field} missing"
        );
    }
    assert_eq!(json["kubeletCmdline"][0], "/usr/bin/kubelet");
    assert!(json["kubeletPid"].is_null());
}

#[test]
fn table_groups_and_puts_failures_first() {
    let fixture = layouts::flags_only();
    let report = fixture.scan();
    let table = nodeward_posture::render_table(&report.0, false);
    assert!(!table.contains('\x1b'), "no colour asked");
    let kubelet = table.find("Kubelet configuration").expect("kubelet group");
    let files = table.find("Configuration files").expect("files group");
    assert!(kubelet < files);
    let first_fail = table[kubelet..].find("FAIL").expect("a failure");
    let first_pass = table[kubelet..].find("PASS").expect("a pass");
    assert!(first_fail < first_pass, "failures first");
    assert!(
        table.contains("Set authentication.anonymous.enabled: false"),
        "remediation shown"
    );
    let colored = nodeward_posture::render_table(&report.0, true);
    assert!(colored.contains('\x1b'), "colour when asked");
}
