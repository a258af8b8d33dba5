//! Findings for a posture that got worse between two snapshots.
//!
//! | previous → next            | finding                 | severity                          |
//! |----------------------------|-------------------------|-----------------------------------|
//! | pass, warn or error → fail | `posture-regression`    | high for a CIS item, else medium  |
//! | pass → error               | `posture-unverifiable`  | low                               |
//! | anything else              | none                    |                                   |
//!
//! A CIS item is a check with at least one `cis-*` benchmark; the others (private keys, PKI
//! directories, certificate expiry) are nodeward's own and medium. `error → fail` counts:
//! the check was not known to pass, but it is known to fail now, and a file that was
//! briefly unparsable while being rewritten must not hide a regression. `pass → error` is
//! not a regression of the configuration but of the agent's ability to judge it, hence its
//! own, lower finding. A check missing from `previous` has no baseline and gives nothing;
//! a snapshot whose scan could not run has no checks, so compare against the last snapshot
//! that had some ([`Baseline`] does).

use jiff::Timestamp;
use nodeward_proto::model::{
    Category, CheckStatus, Finding, PostureCheck, PostureSnapshot, Severity,
};

/// Rule id of a check that now fails and did not before.
pub const REGRESSION: &str = "posture-regression";
/// Rule id of a check that passed and can no longer be judged.
pub const UNVERIFIABLE: &str = "posture-unverifiable";

/// One finding per check that got worse from `previous` to `next`, in `next`'s order.
pub fn regressions(
    previous: &PostureSnapshot,
    next: &PostureSnapshot,
    time: Timestamp,
) -> Vec<Finding> {
    next.checks
        .iter()
        .filter_map(|check| {
            let before = previous.checks.iter().find(|c| c.id == check.id)?;
            finding(before.status, check, time)
        })
        .collect()
}

/// Remembers the last snapshot that had checks, so a scan that could not run in between
/// (the kubelet restarting) neither reports nor hides a regression.
#[derive(Debug, Default)]
pub struct Baseline {
    last_judged: Option<PostureSnapshot>,
}

impl Baseline {
    /// The findings `next` calls for against the last snapshot that had checks; `next`
    /// becomes that snapshot if it has checks.
    pub fn observe(&mut self, next: &PostureSnapshot, time: Timestamp) -> Vec<Finding> {
        if next.scan_error.is_some() || next.checks.is_empty() {
            return Vec::new();
        }
        let findings = self
            .last_judged
            .as_ref()
            .map(|previous| regressions(previous, next, time))
            .unwrap_or_default();
        self.last_judged = Some(next.clone());
        findings
    }
}

fn finding(before: CheckStatus, check: &PostureCheck, time: Timestamp) -> Option<Finding> {
    let (rule, severity, what) = match (before, check.status) {
        (CheckStatus::Pass | CheckStatus::Warn | CheckStatus::Error, CheckStatus::Fail) => {
            let severity = if is_cis(check) {
                Severity::High
            } else {
                Severity::Medium
            };
            (REGRESSION, severity, "fails")
        }
        (CheckStatus::Pass, CheckStatus::Error) => {
            (UNVERIFIABLE, Severity::Low, "can no longer be judged")
        }
        _ => return None,
    };
    let benchmarks = if check.benchmarks.is_empty() {
        "nodeward".to_owned()
    } else {
        check.benchmarks.join(", ")
    };
    let summary = format!(
        "{id} {what} (was {before}): observed {observed} from {source} [{benchmarks}]",
        id = check.id,
        before = status_name(before),
        observed = check.observed,
        source = check.source,
    );
    let mut finding = Finding::new(rule, severity, summary, time);
    finding.category = Category::Posture;
    finding.description = format!(
        "{title}. Expected: {expected}. Remediation: {remediation}. Benchmarks: {benchmarks}.",
        title = check.title,
        expected = check.expected,
        remediation = check.remediation,
    );
    Some(finding)
}

fn is_cis(check: &PostureCheck) -> bool {
    check.benchmarks.iter().any(|b| b.starts_with("cis-"))
}

fn status_name(status: CheckStatus) -> &'static str {
    match status {
        CheckStatus::Pass => "pass",
        CheckStatus::Fail => "fail",
        CheckStatus::Warn => "warn",
        CheckStatus::Error => "error",
    }
}
