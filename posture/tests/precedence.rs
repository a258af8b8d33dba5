//! Where values come from: flag > drop-ins (lexical order, later wins) > config file >
//! defaults, the two default regimes, and bad input that must never pass.

mod support;

use std::fmt::Write as _;

use nodeward_posture::Status::{Error, Fail, Pass};
use serde_json::json;
use support::layouts::{self, HARDENED_ARGS};

const DROP_INS: &str = "--config-dir=/etc/kubernetes/kubelet.conf.d";

fn drop_in(body: &serde_json::Value) -> serde_json::Value {
    let mut doc =
        json!({"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration"});
    support::merge(&mut doc, body);
    doc
}

#[test]
fn each_layer_wins_over_the_next() {
    struct Case {
        name: &'static str,
        config_port: Option<i64>,
        drop_ins: &'static [(&'static str, i64)],
        flag: Option<i64>,
        want_port: &'static str,
        want_source: &'static str,
    }
    let cases = [
        Case {
            name: "default",
            config_port: None,
            drop_ins: &[],
            flag: None,
            want_port: "0",
            want_source: "default",
        },
        Case {
            name: "config over default",
            config_port: Some(10255),
            drop_ins: &[],
            flag: None,
            want_port: "10255",
            want_source: "config /var/lib/kubelet/config.yaml",
        },
        Case {
            name: "drop-in over config",
            config_port: Some(10255),
            drop_ins: &[("50-a.conf", 0)],
            flag: None,
            want_port: "0",
            want_source: "drop-in /etc/kubernetes/kubelet.conf.d/50-a.conf",
        },
        Case {
            name: "later drop-in wins",
            config_port: None,
            drop_ins: &[("10-a.conf", 0), ("20-b.conf", 10255)],
            flag: None,
            want_port: "10255",
            want_source: "drop-in /etc/kubernetes/kubelet.conf.d/20-b.conf",
        },
        Case {
            name: "lexical, not numeric, order",
            config_port: None,
            drop_ins: &[("9-a.conf", 10255), ("10-b.conf", 0)],
            flag: None,
            want_port: "10255",
            want_source: "drop-in /etc/kubernetes/kubelet.conf.d/9-a.conf",
        },
        Case {
            name: "flag over drop-ins",
            config_port: Some(10255),
            drop_ins: &[("10-a.conf", 10255)],
            flag: Some(0),
            want_port: "0",
            want_source: "flag --read-only-port",
        },
    ];
    for case in cases {
        let fixture = layouts::hardened();
        let node = &fixture.node;
        let mut config = layouts::hardened_config();
        support::merge(&mut config, &json!({"readOnlyPort": case.config_port}));
        node.json("/var/lib/kubelet/config.yaml", 0o600, &config)
            .dir("/etc/kubernetes/kubelet.conf.d", 0o755);
        for (name, port) in case.drop_ins {
            node.json(
                &format!("/etc/kubernetes/kubelet.conf.d/{name}"),
                0o600,
                &drop_in(&json!({"readOnlyPort": port})),
            );
        }
        let mut args = format!("{HARDENED_ARGS} {DROP_INS}");
        if let Some(port) = case.flag {
            let _ = write!(args, " --read-only-port={port}");
        }
        let check = fixture
            .node
            .scan(&args)
            .check("kubelet-read-only-port")
            .clone();
        assert!(
            check.observed.starts_with(case.want_port),
            "{}: observed {}",
            case.name,
            check.observed
        );
        assert_eq!(check.source, case.want_source, "{}", case.name);
    }
}

#[test]
fn drop_ins_are_conf_files_only_in_subdirectories_too() {
    let fixture = layouts::hardened();
    fixture
        .node
        .dir("/etc/kubernetes/kubelet.conf.d/sub", 0o755)
        .json(
            "/etc/kubernetes/kubelet.conf.d/sub/10.conf",
            0o600,
            &drop_in(&json!({"readOnlyPort": 10255})),
        )
        .file(
            "/etc/kubernetes/kubelet.conf.d/99.conf.bak",
            0o600,
            "garbage: [",
        )
        .file("/etc/kubernetes/kubelet.conf.d/README", 0o600, "\0binary");
    let report = fixture.node.scan(&format!("{HARDENED_ARGS} {DROP_INS}"));
    report.expect("kubelet-read-only-port", Fail);
    assert!(
        report
            .check("kubelet-read-only-port")
            .source
            .ends_with("sub/10.conf")
    );
}

#[test]
fn flags_only_kubelet_keeps_legacy_defaults() {
    let fixture = layouts::flags_only();
    let report = fixture.scan();
    for id in [
        "kubelet-anonymous-auth",
        "kubelet-authorization-mode",
        "kubelet-read-only-port",
    ] {
        report.expect(id, Fail);
        let check = report.check(id);
        assert_eq!(check.source, "default", "{id}");
        assert!(
            check.observed.contains("legacy flag default"),
            "{id}: {}",
            check.observed
        );
    }
    assert!(
        report
            .check("kubelet-read-only-port")
            .observed
            .starts_with("10255")
    );
    // Flags fix what they name.
    let fixed = fixture.node.scan(&format!(
        "{} --anonymous-auth=false --authorization-mode=Webhook --read-only-port=0",
        fixture.args
    ));
    for id in [
        "kubelet-anonymous-auth",
        "kubelet-authorization-mode",
        "kubelet-read-only-port",
    ] {
        fixed.expect(id, Pass);
    }
}

#[test]
fn config_file_kubelet_gets_secure_defaults() {
    let fixture = layouts::hardened();
    let mut config = layouts::hardened_config();
    support::merge(
        &mut config,
        &json!({"authentication": {"anonymous": null, "webhook": null}, "authorization": null, "readOnlyPort": null}),
    );
    fixture
        .node
        .json("/var/lib/kubelet/config.yaml", 0o600, &config);
    let report = fixture.scan();
    for id in [
        "kubelet-anonymous-auth",
        "kubelet-authorization-mode",
        "kubelet-read-only-port",
    ] {
        report.expect(id, Pass);
        assert_eq!(report.check(id).source, "default");
        assert!(
            report
                .check(id)
                .observed
                .contains("KubeletConfiguration default")
        );
    }
}

#[test]
fn config_dir_without_config_keeps_legacy_defaults() {
    let fixture = layouts::flags_only();
    fixture
        .node
        .dir("/etc/kubernetes/kubelet.conf.d", 0o755)
        .json(
            "/etc/kubernetes/kubelet.conf.d/10.conf",
            0o600,
            &drop_in(&json!({"authorization": {"mode": "Webhook"}})),
        );
    let report = fixture.node.scan(&format!("{} {DROP_INS}", fixture.args));
    report
        .expect("kubelet-authorization-mode", Pass)
        .expect("kubelet-anonymous-auth", Fail);
}

#[test]
fn garbage_input_is_an_error_never_a_pass() {
    let big = "#".repeat(2 * 1024 * 1024);
    let cases: &[(&str, &[u8])] = &[
        ("binary", b"\x7fELF\0\0\x01garbage"),
        ("invalid YAML", b"authentication: [unclosed"),
        ("empty", b""),
        ("wrong kind", b"apiVersion: v1\nkind: Pod\n"),
        ("wrong apiVersion", b"apiVersion: kubelet.config.k8s.io/v1alpha9\nkind: KubeletConfiguration\n"),
        ("not a mapping", b"- 1\n- 2\n"),
        ("invalid UTF-8", b"kind: \xff\xfe\n"),
        ("oversized", big.as_bytes()),
        ("key not a mapping", b"apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nauthentication: 7\n"),
    ];
    for (name, content) in cases {
        let fixture = layouts::hardened();
        fixture
            .node
            .file("/var/lib/kubelet/config.yaml", 0o600, content);
        let report = fixture.scan();
        for id in [
            "kubelet-anonymous-auth",
            "kubelet-authorization-mode",
            "kubelet-read-only-port",
            "kubelet-tls-cipher-suites",
        ] {
            let check = report.check(id);
            assert_eq!(
                check.status, Error,
                "{name}: {id} is {:?}: {}",
                check.status, check.observed
            );
            assert!(!check.observed.is_empty(), "{name}: {id} gives no reason");
        }
    }
}

#[test]
fn missing_config_file_and_drop_in_dir_are_errors() {
    let fixture = layouts::hardened();
    fixture.node.remove("/var/lib/kubelet/config.yaml");
    let report = fixture.scan();
    report.expect("kubelet-anonymous-auth", Error);
    assert!(
        report
            .check("kubelet-anonymous-auth")
            .observed
            .contains("not found")
    );
    let fixture = layouts::hardened();
    let report = fixture
        .node
        .scan(&format!("{HARDENED_ARGS} --config-dir=/nowhere"));
    report.expect("kubelet-read-only-port", Error);
    // A flag still decides what it names: the kubelet never reads the file for it.
    let report = fixture.node.scan(&format!(
        "{HARDENED_ARGS} --config-dir=/nowhere --read-only-port=0"
    ));
    report.expect("kubelet-read-only-port", Pass);
}

#[test]
fn relative_config_offline_is_relative_to_slash() {
    let fixture = layouts::hardened();
    let report = fixture.node.scan(&HARDENED_ARGS.replace(
        "--config=/var/lib/kubelet/config.yaml",
        "--config=var/lib/kubelet/config.yaml",
    ));
    report.expect("kubelet-anonymous-auth", Pass);
}

#[test]
fn symlinks_are_rerooted_not_followed_on_this_machine() {
    let fixture = layouts::hardened();
    // An absolute target that exists on this machine too: it must be looked up in the node.
    fixture
        .node
        .symlink("/etc/kubernetes/pki/ca.crt", "/etc/hostname");
    fixture.scan().expect("kubelet-client-ca-file", Error);
    let fixture = layouts::hardened();
    fixture
        .node
        .symlink("/etc/kubernetes/pki/loop", "/etc/kubernetes/pki/loop");
    let report = fixture.node.scan(&format!(
        "{HARDENED_ARGS} --client-ca-file=/etc/kubernetes/pki/loop"
    ));
    report.expect("kubelet-client-ca-file", Error);
    assert!(
        report
            .check("kubelet-client-ca-file")
            .observed
            .contains("symbolic links")
    );
}

#[test]
fn dependencies_cover_files_and_their_directories() {
    let fixture = layouts::eks_al2023();
    let report = fixture.scan();
    let root = fixture.node.root();
    for path in [
        "etc/kubernetes/kubelet/config.json",
        "etc/kubernetes/kubelet/config.json.d",
        "etc/kubernetes/kubelet/config.json.d/40-hardening.conf",
        "var/lib/kubelet/kubeconfig",
        "var/lib/kubelet/pki",
        "etc/kubernetes/pki/ca.crt",
    ] {
        assert!(
            report.0.dependencies.contains(&root.join(path)),
            "{path} not among {:#?}",
            report.0.dependencies
        );
    }
}
