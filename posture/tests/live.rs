//! Real processes: a fake kubelet (and kube-proxy) whose `/proc/<pid>/exe` is named so,
//! with real command lines, found through a private `proc` or by pid.

mod support;

use nodeward_posture::Status::{Fail, Pass};
use nodeward_posture::cli::{CheckArgs, ColorChoice, Format, run_check};
use nodeward_posture::{KubeletSource, ScanOptions, scan_at};
use serde_json::json;
use support::layouts;
use support::process::{FakeProcess, private_proc};

fn words(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn relative_config_is_resolved_against_the_kubelets_cwd() {
    let fixture = layouts::hardened();
    let root = fixture.node.root();
    // Relative paths inside the config file are relative to the file's directory.
    let mut config = layouts::hardened_config();
    support::merge(
        &mut config,
        &json!({"authentication": {"x509": {"clientCAFile": "../../../etc/kubernetes/pki/ca.crt"}}}),
    );
    fixture
        .node
        .json("/var/lib/kubelet/config.yaml", 0o600, &config);
    // Started in the node root: `var/lib/kubelet/config.yaml` names the fixture's file.
    let args = words(&format!(
        "--config=var/lib/kubelet/config.yaml --kubeconfig={}/etc/kubernetes/kubelet.conf --cert-dir={}/var/lib/kubelet/pki",
        root.display(),
        root.display()
    ));
    let kubelet = FakeProcess::start("kubelet", &args, root);
    let options = ScanOptions {
        host_root: None,
        kubelet: KubeletSource::Pid(kubelet.pid()),
    };
    let report = support::Report(scan_at(&options, support::now()).expect("scan by pid"));
    assert_eq!(report.0.kubelet_pid, Some(kubelet.pid()));
    assert_eq!(report.0.kubelet_cmdline[1..], args[..]);
    let anonymous = report.check("kubelet-anonymous-auth");
    assert_eq!(anonymous.status, Pass, "{}", anonymous.observed);
    assert_eq!(
        anonymous.source,
        format!("config {}/var/lib/kubelet/config.yaml", root.display())
    );
    report.expect("kubelet-config-permissions", Pass);
    report.expect("kubelet-client-ca-file", Pass);
}

#[test]
fn discovery_finds_the_kubelet_and_kube_proxy() {
    let fixture = layouts::hardened();
    let root = fixture.node.root();
    fixture.node
        .file("/var/lib/kube-proxy/kubeconfig.conf", 0o644, layouts::exec_kubeconfig())
        .json(
            "/var/lib/kube-proxy/config.conf",
            0o644,
            &json!({"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
                    "clientConnection": {"kubeconfig": format!("{}/var/lib/kube-proxy/kubeconfig.conf", root.display())},
                    "metricsBindAddress": "0.0.0.0:10249"}),
        );
    let kubelet_args = words(&format!(
        "--config={r}/var/lib/kubelet/config.yaml --kubeconfig={r}/etc/kubernetes/kubelet.conf --cert-dir={r}/var/lib/kubelet/pki",
        r = root.display()
    ));
    let kubelet = FakeProcess::start("kubelet", &kubelet_args, root);
    let proxy = FakeProcess::start(
        "kube-proxy",
        &words(&format!(
            "--config={}/var/lib/kube-proxy/config.conf --hostname-override=node-1",
            root.display()
        )),
        root,
    );
    private_proc(root, &[kubelet.pid(), proxy.pid()]);
    let options = ScanOptions {
        host_root: Some(root.to_path_buf()),
        kubelet: KubeletSource::Discover,
    };
    let report = support::Report(scan_at(&options, support::now()).expect("discover"));
    assert_eq!(report.0.kubelet_pid, Some(kubelet.pid()));
    report
        .expect("kubelet-anonymous-auth", Pass)
        .expect("kube-proxy-kubeconfig-permissions", Fail)
        .expect("kube-proxy-kubeconfig-ownership", Pass)
        .expect("kube-proxy-metrics-bind-address", Fail);
    fixture.node.chmod("/var/lib/kube-proxy/kubeconfig.conf", 0o600).json(
        "/var/lib/kube-proxy/config.conf",
        0o644,
        &json!({"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
                "clientConnection": {"kubeconfig": format!("{}/var/lib/kube-proxy/kubeconfig.conf", root.display())}}),
    );
    let report = support::Report(scan_at(&options, support::now()).expect("discover"));
    report
        .expect("kube-proxy-kubeconfig-permissions", Pass)
        .expect("kube-proxy-metrics-bind-address", Pass);
}

#[test]
fn run_check_exits_1_on_a_failing_kubelet_and_prints_json() {
    let fixture = layouts::flags_only();
    let root = fixture.node.root();
    let kubelet = FakeProcess::start(
        "kubelet",
        &words(&format!(
            "--kubeconfig={}/etc/kubernetes/kubelet.conf",
            root.display()
        )),
        root,
    );
    let args = CheckArgs {
        kubelet_pid: Some(kubelet.pid()),
        format: Format::Json,
        color: ColorChoice::Never,
        ..CheckArgs::default()
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(
        run_check(&args, &mut out, &mut err),
        1,
        "{}",
        String::from_utf8_lossy(&err)
    );
    let json: serde_json::Value = serde_json::from_slice(&out).expect("JSON output");
    assert!(json["node"].is_string());
    let anonymous = json["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["id"] == "kubelet-anonymous-auth")
        .expect("anonymous check");
    assert_eq!(anonymous["status"], "fail");
    assert_eq!(anonymous["source"], "default");
}

#[test]
fn a_pid_that_is_not_a_process_is_a_scan_error() {
    let args = CheckArgs {
        kubelet_pid: Some(i32::MAX),
        color: ColorChoice::Never,
        ..CheckArgs::default()
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(run_check(&args, &mut out, &mut err), 2);
    assert!(String::from_utf8_lossy(&err).contains("no process"));
}
