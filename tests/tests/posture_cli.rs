//! `nodeward-agent check`, the binary a person runs: its exit status and its outputs.

use std::process::{Command, Output};

use nodeward_testkit::workspace_bin;
use serde_json::Value;

fn check(args: &[&str]) -> Output {
    Command::new(workspace_bin("nodeward-agent"))
        .arg("check")
        .args(args)
        .output()
        .expect("running nodeward-agent check")
}

#[test]
fn without_a_kubelet_the_check_says_so_and_exits_2() {
    // This machine runs no kubelet: discovery through /proc must say so, not pass.
    let out = check(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("no kubelet process found on this node"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout when the scan cannot run"
    );
}

#[test]
fn an_offline_flags_only_kubelet_fails_with_the_legacy_defaults_in_json() {
    let root = tempfile::tempdir().unwrap();
    let out = check(&[
        "--host-root",
        root.path().to_str().unwrap(),
        "--kubelet-args",
        "--anonymous-auth=false --authorization-mode=Webhook",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("check --format json");
    let checks = report["checks"].as_array().expect("checks");
    let by_id = |id: &str| {
        checks
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("no check {id}"))
    };
    // The flag wins ...
    let anonymous = by_id("kubelet-anonymous-auth");
    assert_eq!(anonymous["status"], "pass");
    assert_eq!(anonymous["source"], "flag --anonymous-auth");
    // ... and what it leaves unset keeps the legacy flag default, which is insecure.
    let read_only = by_id("kubelet-read-only-port");
    assert_eq!(read_only["status"], "fail");
    assert_eq!(
        read_only["observed"]
            .as_str()
            .map(|o| o.starts_with("10255")),
        Some(true)
    );
    assert_eq!(read_only["source"], "default");
    for check in checks {
        assert!(!check["title"].as_str().unwrap_or("").is_empty(), "{check}");
        assert!(
            !check["remediation"].as_str().unwrap_or("").is_empty(),
            "{check}"
        );
    }
}
