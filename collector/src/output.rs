//! How the SOC-side commands print findings and nodes: JSON (one object per line, for
//! programs), OCSF (the same, as OCSF 1.8.0) or tables for people.

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL};
use jiff::Timestamp;
use nodeward_proto::{model::FindingRecord, v1};
use serde::Serialize;

use crate::export::ocsf::to_ocsf;

/// The stored record as JSON, the contract `tail --format json` prints.
pub fn finding_json(record: &FindingRecord) -> serde_json::Result<String> {
    serde_json::to_string(record)
}

/// The record as an OCSF Detection or Compliance Finding.
pub fn finding_ocsf(record: &FindingRecord) -> serde_json::Result<String> {
    serde_json::to_string(&to_ocsf(record))
}

/// The header of [`finding_row`]'s columns.
pub fn finding_header() -> String {
    format!(
        "{:>8}  {:<24}  {:<20}  {:<8}  {:<28}  SUMMARY",
        "ID", "TIME", "NODE", "SEVERITY", "RULE"
    )
}

/// One finding as a line of fixed-width columns: `tail` prints rows as they come, so
/// it cannot size a table to its content.
pub fn finding_row(record: &FindingRecord) -> String {
    let f = &record.finding;
    format!(
        "{:>8}  {:<24}  {:<20}  {:<8}  {:<28}  {}",
        record.id,
        f.time.round(jiff::Unit::Millisecond).unwrap_or(f.time),
        record.node_name,
        severity(f),
        f.rule_id,
        f.summary
    )
}

/// Findings as a table.
pub fn findings_table(records: &[FindingRecord]) -> String {
    let mut table = table(["ID", "Time", "Node", "Severity", "Rule", "Summary"]);
    for record in records {
        let f = &record.finding;
        table.add_row(vec![
            record.id.to_string(),
            f.time
                .round(jiff::Unit::Second)
                .unwrap_or(f.time)
                .to_string(),
            record.node_name.clone(),
            severity(f).to_owned(),
            f.rule_id.clone(),
            f.summary.clone(),
        ]);
    }
    table.to_string()
}

fn severity(finding: &nodeward_proto::model::Finding) -> &'static str {
    use nodeward_proto::model::Severity;
    match finding.severity {
        Severity::Info => "info",
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

/// A node as `nodes --format json` prints it (camelCase, like findings).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    pub node: String,
    pub cluster: String,
    pub agent_version: String,
    pub boot_id: String,
    pub last_seen: Option<Timestamp>,
    pub silent: bool,
    /// The IMDS enforcement mode; empty before the first posture snapshot.
    pub enforcement: String,
    pub failing_checks: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub posture_time: Option<Timestamp>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scan_error: String,
}

impl From<v1::NodeSummary> for NodeView {
    fn from(node: v1::NodeSummary) -> Self {
        let time = |t: Option<prost_types::Timestamp>| {
            t.and_then(|t| Timestamp::new(t.seconds, t.nanos).ok())
        };
        Self {
            node: node.node_name,
            cluster: node.cluster,
            agent_version: node.agent_version,
            boot_id: node.boot_id,
            last_seen: time(node.last_seen),
            silent: node.silent,
            enforcement: node.imds_mode,
            failing_checks: node.failing_checks,
            posture_time: time(node.posture_time),
            scan_error: node.scan_error,
        }
    }
}

/// One JSON object per node, one per line.
pub fn nodes_json(nodes: &[NodeView]) -> serde_json::Result<String> {
    let mut out = String::new();
    for node in nodes {
        out.push_str(&serde_json::to_string(node)?);
        out.push('\n');
    }
    Ok(out)
}

/// The fleet as a table.
pub fn nodes_table(nodes: &[NodeView]) -> String {
    let mut table = table([
        "Node",
        "Cluster",
        "Last seen",
        "Silent",
        "Enforcement",
        "Failing checks",
    ]);
    for node in nodes {
        let failing = if node.failing_checks.is_empty() {
            "0".to_owned()
        } else {
            format!(
                "{}: {}",
                node.failing_checks.len(),
                node.failing_checks.join(", ")
            )
        };
        let enforcement = if node.scan_error.is_empty() {
            node.enforcement.clone()
        } else {
            format!("{} (scan failed: {})", node.enforcement, node.scan_error)
        };
        table.add_row(vec![
            node.node.clone(),
            node.cluster.clone(),
            node.last_seen
                .map(|t| t.round(jiff::Unit::Second).unwrap_or(t).to_string())
                .unwrap_or_default(),
            if node.silent { "yes" } else { "no" }.to_owned(),
            enforcement,
            failing,
        ]);
    }
    table.to_string()
}

fn table<const N: usize>(header: [&str; N]) -> Table {
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    table
}

#[cfg(test)]
mod tests;
