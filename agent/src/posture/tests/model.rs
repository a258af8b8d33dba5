//! Snapshots, regressions and the config section, without processes.

use std::{fs, path::PathBuf, time::Duration};

use jiff::Timestamp;
use nodeward_proto::model::{Category, CheckStatus, PostureCheck, PostureSnapshot, Severity};

use super::fixture::{ANONYMOUS, check};
use crate::posture::{
    config::PostureConfig,
    regressions::{Baseline, REGRESSION, UNVERIFIABLE, regressions},
    snapshot::{check_status, from_error, from_report},
};

fn wire_check(id: &str, status: CheckStatus, benchmarks: &[&str]) -> PostureCheck {
    PostureCheck {
        id: id.to_owned(),
        title: format!("{id} title"),
        benchmarks: benchmarks.iter().map(|b| (*b).to_owned()).collect(),
        status,
        observed: format!("{id} observed"),
        expected: format!("{id} expected"),
        source: format!("{id} source"),
        remediation: format!("{id} remediation"),
    }
}

/// Checks named `cis-*` implement a CIS item; the others are nodeward's own.
fn snapshot(checks: &[(&str, CheckStatus)]) -> PostureSnapshot {
    let mut snapshot = from_error("", 1, Timestamp::UNIX_EPOCH, "enforce".to_owned());
    snapshot.scan_error = None;
    snapshot.checks = checks
        .iter()
        .map(|(id, status)| {
            let benchmarks: &[&str] = if id.starts_with("cis") {
                &["cis-1.12:4.2.1"]
            } else {
                &[]
            };
            wire_check(id, *status, benchmarks)
        })
        .collect();
    snapshot
}

#[test]
fn regressions_follow_the_documented_table() {
    use CheckStatus::{Error, Fail, Pass, Warn};
    let previous = snapshot(&[
        ("cis-a", Pass),
        ("cis-b", Warn),
        ("own-c", Pass),
        ("cis-d", Pass),
        ("cis-e", Fail),
        ("cis-f", Error),
        ("cis-g", Fail),
    ]);
    let next = snapshot(&[
        ("cis-a", Fail),
        ("cis-b", Fail),
        ("own-c", Fail),
        ("cis-d", Error),
        ("cis-e", Fail),
        ("cis-f", Fail),
        ("cis-g", Pass),
        ("cis-new", Fail),
    ]);
    let found: Vec<(String, &str, Severity)> = regressions(&previous, &next, Timestamp::UNIX_EPOCH)
        .iter()
        .map(|f| {
            assert_eq!(f.category, Category::Posture);
            let id = f.summary.split_whitespace().next().unwrap_or_default();
            (id.to_owned(), f.rule_id.as_str(), f.severity)
        })
        .map(|(id, rule, severity)| {
            (
                id,
                if rule == REGRESSION {
                    REGRESSION
                } else {
                    UNVERIFIABLE
                },
                severity,
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            ("cis-a".to_owned(), REGRESSION, Severity::High),
            ("cis-b".to_owned(), REGRESSION, Severity::High),
            ("own-c".to_owned(), REGRESSION, Severity::Medium),
            ("cis-d".to_owned(), UNVERIFIABLE, Severity::Low),
            ("cis-f".to_owned(), REGRESSION, Severity::High),
        ]
    );
}

#[test]
fn a_regression_finding_names_the_check_value_source_and_benchmarks() {
    let previous = snapshot(&[("cis-a", CheckStatus::Pass)]);
    let next = snapshot(&[("cis-a", CheckStatus::Fail)]);
    let [finding] = regressions(&previous, &next, Timestamp::UNIX_EPOCH)
        .try_into()
        .expect("one finding");
    assert_eq!(
        finding.summary,
        "cis-a fails (was pass): observed cis-a observed from cis-a source [cis-1.12:4.2.1]"
    );
    assert_eq!(
        finding.description,
        "cis-a title. Expected: cis-a expected. Remediation: cis-a remediation. Benchmarks: cis-1.12:4.2.1."
    );
}

#[test]
fn the_baseline_skips_snapshots_whose_scan_could_not_run() {
    let now = Timestamp::UNIX_EPOCH;
    let mut baseline = Baseline::default();
    assert!(
        baseline
            .observe(&snapshot(&[("cis-a", CheckStatus::Pass)]), now)
            .is_empty()
    );
    let no_kubelet = from_error("no kubelet", 2, now, "enforce".to_owned());
    assert!(baseline.observe(&no_kubelet, now).is_empty());
    let findings = baseline.observe(&snapshot(&[("cis-a", CheckStatus::Fail)]), now);
    assert_eq!(findings.len(), 1, "pass, no kubelet, fail is a regression");
    assert!(
        baseline
            .observe(&snapshot(&[("cis-a", CheckStatus::Fail)]), now)
            .is_empty()
    );
}

#[test]
fn a_report_becomes_a_snapshot_with_every_status() {
    use nodeward_posture::Status;
    for (status, wire) in [
        (Status::Pass, CheckStatus::Pass),
        (Status::Fail, CheckStatus::Fail),
        (Status::Warn, CheckStatus::Warn),
        (Status::Error, CheckStatus::Error),
    ] {
        assert_eq!(check_status(status), wire);
    }
    let offline = nodeward_posture::ScanOptions {
        host_root: Some(tempfile::tempdir().expect("tempdir").keep()),
        kubelet: nodeward_posture::KubeletSource::Args("kubelet --anonymous-auth=false".to_owned()),
    };
    let report = nodeward_posture::scan(&offline).expect("offline scan");
    let snapshot = from_report(&report, 3, Timestamp::UNIX_EPOCH, "audit".to_owned());
    assert_eq!(snapshot.generation, 3);
    assert_eq!(snapshot.imds_mode, "audit");
    assert_eq!(snapshot.scan_error, None);
    assert_eq!(snapshot.checks.len(), report.checks.len());
    let anonymous = check(&snapshot, ANONYMOUS);
    assert_eq!(anonymous.status, CheckStatus::Pass);
    assert_eq!(anonymous.source, "flag --anonymous-auth");
    assert!(anonymous.benchmarks.contains(&"cis-1.12:4.2.1".to_owned()));
    let _ = fs::remove_dir_all(offline.host_root.expect("root"));
}

#[test]
fn the_config_section_has_defaults_and_rejects_unknown_keys() {
    let empty: PostureConfig = serde_json::from_str("{}").expect("empty section");
    assert_eq!(empty, PostureConfig::default());
    assert!(empty.enabled);
    assert_eq!(empty.interval(), Duration::from_mins(10));
    empty.validate().expect("defaults are valid");
    let set: PostureConfig =
        serde_json::from_str(r#"{"enabled": false, "intervalSeconds": 60}"#).expect("full section");
    assert_eq!(set.interval(), Duration::from_mins(1));
    assert!(serde_json::from_str::<PostureConfig>(r#"{"interval": 60}"#).is_err());
    // hostRoot is the agent's top-level key, not this section's.
    assert!(serde_json::from_str::<PostureConfig>(r#"{"hostRoot": "/host"}"#).is_err());
    let short = PostureConfig {
        interval_seconds: 1,
        ..PostureConfig::default()
    };
    assert!(
        short
            .validate()
            .unwrap_err()
            .contains("posture.intervalSeconds")
    );
    let relative = PostureConfig {
        host_root: Some(PathBuf::from("host")),
        ..PostureConfig::default()
    };
    assert!(relative.validate().unwrap_err().contains("hostRoot"));
}
