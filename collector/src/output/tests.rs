use jiff::Timestamp;
use nodeward_proto::model::{Finding, FindingRecord, Severity};

use super::*;

fn record(id: u64, summary: &str) -> FindingRecord {
    let time: Timestamp = "2026-11-22T11:15:28.052Z".parse().unwrap();
    FindingRecord {
        id,
        node_name: "ip-10-0-1-7".into(),
        boot_id: "boot".into(),
        received_time: time,
        finding: Finding {
            seq: id,
            ..Finding::new("imds-access", Severity::High, summary, time)
        },
    }
}

fn node(name: &str, failing: &[&str], silent: bool) -> NodeView {
    NodeView::from(v1::NodeSummary {
        node_name: name.into(),
        cluster: "prod".into(),
        agent_version: "0.1.0".into(),
        boot_id: "b".into(),
        last_seen: Some(prost_types::Timestamp {
            seconds: 1_795_000_000,
            nanos: 5,
        }),
        silent,
        imds_mode: "enforce".into(),
        failing_checks: failing.iter().map(|s| (*s).to_owned()).collect(),
        posture_time: None,
        scan_error: String::new(),
    })
}

#[test]
fn json_lines_carry_the_unique_id_and_parse_back() {
    let line = finding_json(&record(42, "tried IMDS")).unwrap();
    assert!(!line.contains('\n'));
    let parsed: FindingRecord = serde_json::from_str(&line).unwrap();
    assert_eq!(parsed, record(42, "tried IMDS"));
    let ocsf: serde_json::Value =
        serde_json::from_str(&finding_ocsf(&record(42, "x")).unwrap()).unwrap();
    assert_eq!(ocsf["metadata"]["version"], "1.8.0", "{ocsf}");
}

#[test]
fn findings_table_has_a_row_per_finding() {
    let table = findings_table(&[record(1, "first attempt"), record(7, "second attempt")]);
    for needle in [
        "ID",
        "Rule",
        "first attempt",
        "second attempt",
        "imds-access",
        "high",
    ] {
        assert!(table.contains(needle), "{needle} in\n{table}");
    }
    let rows = table.lines().filter(|l| l.contains("imds-access")).count();
    assert_eq!(rows, 2, "{table}");
    let row = finding_row(&record(7, "second attempt"));
    assert!(
        row.trim_start().starts_with("7  2026-11-22T11:15:28.052Z"),
        "{row}"
    );
    assert_eq!(
        finding_header().find("SUMMARY"),
        row.find("second attempt"),
        "columns line up"
    );
}

#[test]
fn nodes_print_as_json_lines_and_a_table() {
    let nodes = [
        node("node-a", &[], false),
        node(
            "node-b",
            &["kubelet-anonymous-auth", "kubelet-read-only-port"],
            true,
        ),
    ];
    let json = nodes_json(&nodes).unwrap();
    let parsed: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(parsed.len(), 2);
    assert_eq!(parsed[1]["node"], "node-b");
    assert_eq!(parsed[1]["silent"], true);
    assert_eq!(parsed[1]["enforcement"], "enforce");
    assert_eq!(parsed[1]["failingChecks"][1], "kubelet-read-only-port");
    assert_eq!(parsed[0]["lastSeen"], "2026-11-18T11:06:40.000000005Z");

    let table = nodes_table(&nodes);
    let row_b = table.lines().find(|l| l.contains("node-b")).unwrap();
    assert!(
        row_b.contains("yes") && row_b.contains("2: kubelet-anonymous-auth"),
        "{table}"
    );
    let row_a = table.lines().find(|l| l.contains("node-a")).unwrap();
    assert!(
        row_a.contains("no") && row_a.contains("enforce") && row_a.contains("prod"),
        "{table}"
    );
}
