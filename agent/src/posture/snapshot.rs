//! A scan's result as the collector receives it: `PostureReport` (or why the scan could not
//! run) to `model::PostureSnapshot`.

use jiff::Timestamp;
use nodeward_posture::{CheckResult, PostureReport, Status};
use nodeward_proto::model::{CheckStatus, PostureCheck, PostureSnapshot};

/// The wire status of a check's verdict (the two enums name the same four verdicts).
pub fn check_status(status: Status) -> CheckStatus {
    match status {
        Status::Pass => CheckStatus::Pass,
        Status::Fail => CheckStatus::Fail,
        Status::Warn => CheckStatus::Warn,
        Status::Error => CheckStatus::Error,
    }
}

/// One check's verdict on the wire.
pub fn posture_check(check: &CheckResult) -> PostureCheck {
    PostureCheck {
        id: check.id.clone(),
        title: check.title.clone(),
        benchmarks: check.benchmarks.clone(),
        status: check_status(check.status),
        observed: check.observed.clone(),
        expected: check.expected.clone(),
        source: check.source.clone(),
        remediation: check.remediation.clone(),
    }
}

/// The snapshot of a scan that ran, every check in catalogue order.
pub fn from_report(
    report: &PostureReport,
    generation: u64,
    time: Timestamp,
    imds_mode: String,
) -> PostureSnapshot {
    PostureSnapshot {
        generation,
        time,
        imds_mode,
        checks: report.checks.iter().map(posture_check).collect(),
        scan_error: None,
        policy_generation: None,
    }
}

/// The snapshot of a scan that could not run (no kubelet, `/proc` unreadable, ...): no
/// checks, and why.
pub fn from_error(
    error: impl Into<String>,
    generation: u64,
    time: Timestamp,
    imds_mode: String,
) -> PostureSnapshot {
    PostureSnapshot {
        generation,
        time,
        imds_mode,
        checks: Vec::new(),
        scan_error: Some(error.into()),
        policy_generation: None,
    }
}

/// Whether two snapshots say the same about the node: same verdicts (status, observed value,
/// source, ...), same scan error, same IMDS mode. Generation and time are not compared.
pub fn same_posture(a: &PostureSnapshot, b: &PostureSnapshot) -> bool {
    a.checks == b.checks
        && a.scan_error == b.scan_error
        && a.imds_mode == b.imds_mode
        && a.policy_generation == b.policy_generation
}
