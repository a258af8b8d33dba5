use std::collections::BTreeMap;

use nodeward_proto::model::Protocol;
use serde_json::json;

use super::*;

fn at(text: &str) -> Timestamp {
    text.parse().expect("a test timestamp")
}

fn record(finding: Finding) -> FindingRecord {
    FindingRecord {
        id: 42,
        node_name: "node-a".into(),
        boot_id: "boot-1".into(),
        received_time: at("2026-05-01T10:00:01Z"),
        finding,
    }
}

fn imds_attempt() -> Finding {
    Finding {
        seq: 7,
        pod: Some(Pod {
            uid: "pod-uid-1".into(),
            namespace: "shop".into(),
            name: "web-0".into(),
            service_account: "web".into(),
            labels: BTreeMap::from([("app".into(), "web".into())]),
            owner: "StatefulSet/web".into(),
            ..Pod::default()
        }),
        container: Some(Container {
            id: "c0ffee".into(),
            name: "web".into(),
            image: "registry.example/web:1.2".into(),
        }),
        process: Some(Process {
            pid: 4242,
            ppid: 4200,
            uid: 1000,
            gid: 1000,
            comm: "curl".into(),
            cgroup_id: 99,
            binary: "/usr/bin/curl".into(),
            args: vec!["curl".into(), "http://169.254.169.254/".into()],
            ..Process::default()
        }),
        parent: Some(Process {
            pid: 4200,
            comm: "sh".into(),
            binary: "/bin/sh".into(),
            ..Process::default()
        }),
        destination: Some(Destination {
            address: "169.254.169.254".parse().unwrap(),
            port: 80,
            protocol: Protocol::Tcp,
        }),
        verdict: Some(Verdict::Blocked),
        category: Category::Enforcement,
        techniques: vec!["T1552.005".into()],
        ..Finding::new(
            "imds-access",
            Severity::High,
            "curl (pid 4242) in shop/web-0 tried to connect to the instance metadata service: blocked",
            at("2026-05-01T10:00:00Z"),
        )
    }
}

fn posture_regression() -> Finding {
    Finding {
        seq: 3,
        category: Category::Posture,
        description: "Anonymous requests to the kubelet must be refused.".into(),
        ..Finding::new(
            "kubelet-anonymous-auth",
            Severity::High,
            "kubelet allows anonymous requests (--anonymous-auth=true)",
            at("2026-05-01T09:00:00Z"),
        )
    }
}

#[test]
fn each_category_maps_to_its_class() {
    for (category, class_uid) in [
        (Category::Runtime, 2004),
        (Category::Enforcement, 2004),
        (Category::Health, 2004),
        (Category::Posture, 2003),
    ] {
        let finding = Finding {
            category,
            ..Finding::new(
                "rule",
                Severity::Medium,
                "summary",
                at("2026-05-01T00:00:00Z"),
            )
        };
        let event = to_ocsf(&record(finding));
        assert_eq!(event["class_uid"], class_uid, "{category:?}: {event:#}");
        assert_eq!(event["category_uid"], 2, "{category:?}");
        assert_eq!(event["type_uid"], class_uid * 100 + 1, "{category:?}");
        // What OCSF 1.1 and 1.8 both require of every finding.
        for path in [
            "/activity_id",
            "/time",
            "/severity_id",
            "/metadata/version",
            "/metadata/product/name",
            "/finding_info/uid",
            "/finding_info/title",
            "/finding_info/analytic/type_id",
            "/device/type_id",
        ] {
            assert!(
                event.pointer(path).is_some(),
                "{category:?} lacks {path}: {event:#}"
            );
        }
        assert_eq!(event["metadata"]["version"], OCSF_VERSION);
        assert_eq!(
            event.pointer("/compliance/standards/0").is_some(),
            category == Category::Posture,
            "{category:?}: compliance is for posture only"
        );
    }
}

#[test]
fn severities_and_verdicts_use_ocsf_ids() {
    for (severity, id) in [
        (Severity::Info, 1),
        (Severity::Low, 2),
        (Severity::Medium, 3),
        (Severity::High, 4),
        (Severity::Critical, 5),
    ] {
        let finding = Finding::new("r", severity, "s", at("2026-05-01T00:00:00Z"));
        assert_eq!(to_ocsf(&record(finding))["severity_id"], id, "{severity:?}");
    }
    for (verdict, disposition_id, action_id) in [
        (Verdict::Blocked, 2, 2),
        (Verdict::Allowed, 1, 1),
        (Verdict::Audited, 15, 1),
    ] {
        let finding = Finding {
            verdict: Some(verdict),
            ..imds_attempt()
        };
        let event = to_ocsf(&record(finding));
        assert_eq!(event["disposition_id"], disposition_id, "{verdict:?}");
        assert_eq!(event["action_id"], action_id, "{verdict:?}");
    }
}

#[test]
fn posture_uid_is_stable_per_node_and_check() {
    let first = to_ocsf(&record(posture_regression()));
    let rescan = to_ocsf(&FindingRecord {
        id: 43,
        ..record(Finding {
            seq: 9,
            ..posture_regression()
        })
    });
    assert_eq!(first["finding_info"]["uid"], rescan["finding_info"]["uid"]);
    assert_ne!(first["metadata"]["uid"], rescan["metadata"]["uid"]);
}

#[test]
fn a_lone_container_is_kept_in_unmapped() {
    let finding = Finding {
        process: None,
        parent: None,
        destination: None,
        verdict: None,
        ..imds_attempt()
    };
    let event = to_ocsf(&record(finding));
    assert!(event.get("evidences").is_none(), "{event:#}");
    assert_eq!(event["unmapped"]["nodeward"]["container"]["uid"], "c0ffee");
}

#[test]
fn golden_enforcement_finding() {
    let curl = json!({
        "pid": 4242,
        "name": "curl",
        "cmd_line": "curl http://169.254.169.254/",
        "file": { "name": "curl", "path": "/usr/bin/curl", "type_id": 1, "type": "Regular File" },
        "user": { "uid": "1000" },
        "parent_process": {
            "pid": 4200,
            "name": "sh",
            "file": { "name": "sh", "path": "/bin/sh", "type_id": 1, "type": "Regular File" },
            "user": { "uid": "0" },
        },
    });
    let expected = json!({
        "activity_id": 1,
        "activity_name": "Create",
        "category_uid": 2,
        "category_name": "Findings",
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "type_uid": 200_401,
        "type_name": "Detection Finding: Create",
        "time": 1_777_629_600_000_i64,
        "severity_id": 4,
        "severity": "High",
        "status_id": 1,
        "status": "New",
        "message": "curl (pid 4242) in shop/web-0 tried to connect to the instance metadata service: blocked",
        "count": 1,
        "is_alert": true,
        "action_id": 2,
        "action": "Denied",
        "disposition_id": 2,
        "disposition": "Blocked",
        "attacks": [{ "technique": { "uid": "T1552" }, "sub_technique": { "uid": "T1552.005" } }],
        "metadata": {
            "version": "1.8.0",
            "product": { "name": "nodeward", "vendor_name": "nodeward", "version": env!("CARGO_PKG_VERSION") },
            "uid": "42",
            "event_code": "imds-access",
            "original_time": "2026-05-01T10:00:00Z",
            "logged_time": 1_777_629_601_000_i64,
            "sequence": 7,
            "profiles": ["host", "security_control"],
        },
        "finding_info": {
            "uid": "nodeward:42",
            "title": "imds-access",
            "desc": "curl (pid 4242) in shop/web-0 tried to connect to the instance metadata service: blocked",
            "types": ["enforcement"],
            "created_time": 1_777_629_600_000_i64,
            "analytic": { "uid": "imds-access", "name": "imds-access", "type_id": 1, "type": "Rule" },
            "attacks": [{ "technique": { "uid": "T1552" }, "sub_technique": { "uid": "T1552.005" } }],
        },
        "device": { "hostname": "node-a", "name": "node-a", "type_id": 1, "type": "Server", "boot_uid": "boot-1" },
        "actor": { "process": curl.clone() },
        "resources": [{
            "uid": "pod-uid-1",
            "name": "web-0",
            "namespace": "shop",
            "type": "Kubernetes Pod",
            "labels": ["app=web"],
            "role_id": 3,
            "role": "Affected",
            "data": { "serviceAccount": "web", "hostNetwork": false, "owner": "StatefulSet/web", "identityPending": false },
        }],
        "evidences": [{
            "actor": { "process": curl },
            "container": {
                "uid": "c0ffee",
                "name": "web",
                "image": { "name": "registry.example/web:1.2", "uid": "registry.example/web:1.2" },
                "orchestrator": "Kubernetes",
                "pod_uuid": "pod-uid-1",
            },
            "dst_endpoint": { "ip": "169.254.169.254", "port": 80 },
            "connection_info": {
                "protocol_name": "tcp",
                "protocol_num": 6,
                "protocol_ver_id": 4,
                "direction_id": 2,
                "direction": "Outbound",
            },
        }],
        "unmapped": { "nodeward": {
            "category": "enforcement",
            "verdict": "blocked",
            "process": { "cgroupId": 99, "gid": 1000, "tty": false, "truncated": false },
        } },
    });
    let actual = to_ocsf(&record(imds_attempt()));
    assert_eq!(actual, expected, "actual:\n{actual:#}");
}

#[test]
fn golden_posture_finding() {
    let expected = json!({
        "activity_id": 1,
        "activity_name": "Create",
        "category_uid": 2,
        "category_name": "Findings",
        "class_uid": 2003,
        "class_name": "Compliance Finding",
        "type_uid": 200_301,
        "type_name": "Compliance Finding: Create",
        "time": 1_777_626_000_000_i64,
        "severity_id": 4,
        "severity": "High",
        "status_id": 1,
        "status": "New",
        "message": "kubelet allows anonymous requests (--anonymous-auth=true)",
        "count": 1,
        "metadata": {
            "version": "1.8.0",
            "product": { "name": "nodeward", "vendor_name": "nodeward", "version": env!("CARGO_PKG_VERSION") },
            "uid": "42",
            "event_code": "kubelet-anonymous-auth",
            "original_time": "2026-05-01T09:00:00Z",
            "logged_time": 1_777_629_601_000_i64,
            "sequence": 3,
            "profiles": ["host"],
        },
        "finding_info": {
            "uid": "nodeward:node-a:kubelet-anonymous-auth",
            "title": "kubelet-anonymous-auth",
            "desc": "Anonymous requests to the kubelet must be refused.",
            "types": ["posture"],
            "created_time": 1_777_626_000_000_i64,
            "analytic": {
                "uid": "kubelet-anonymous-auth",
                "name": "kubelet-anonymous-auth",
                "type_id": 1,
                "type": "Rule",
            },
        },
        "compliance": {
            "standards": ["CIS Kubernetes Benchmark"],
            "control": "kubelet-anonymous-auth",
            "desc": "kubelet allows anonymous requests (--anonymous-auth=true)",
            "status_id": 3,
            "status": "Fail",
        },
        "device": { "hostname": "node-a", "name": "node-a", "type_id": 1, "type": "Server", "boot_uid": "boot-1" },
        "resources": [{
            "uid": "node-a",
            "name": "node-a",
            "hostname": "node-a",
            "type": "Kubernetes Node",
            "role_id": 1,
            "role": "Target",
        }],
        "unmapped": { "nodeward": { "category": "posture" } },
    });
    let actual = to_ocsf(&record(posture_regression()));
    assert_eq!(actual, expected, "actual:\n{actual:#}");
}
