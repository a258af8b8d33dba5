//! Findings about nodeward itself, and helpers the finding builders share.

use jiff::Timestamp;
use nodeward_proto::model::{Category, Finding, Severity};

use crate::outbox::Dropped;

pub const RULE_EVENTS_LOST: &str = "events-lost";
pub const RULE_SPOOL_OVERFLOW: &str = "spool-overflow";
pub const RULE_IMDS_NODE_GUARD: &str = "imds-node-guard";

/// An `events-lost` finding for `count` reports that never reached the agent.
pub fn lost(source: &str, count: u64) -> Finding {
    let summary = format!(
        "{count} {source} reports were lost before reaching the agent (kernel ring buffer full); nodeward was partly blind"
    );
    Finding {
        count,
        category: Category::Health,
        ..Finding::new(
            RULE_EVENTS_LOST,
            Severity::Medium,
            summary,
            Timestamp::now(),
        )
    }
}

/// A `spool-overflow` finding: the outbox bound dropped findings while the collector was
/// unreachable.
pub fn spool_overflow(dropped: Dropped) -> Finding {
    let summary = format!(
        "{} findings (sequence {}..={}) were dropped from the agent's spool, oldest first, while the collector was unreachable; raise collector.spoolMaxBytes to keep more",
        dropped.count, dropped.first_seq, dropped.last_seq
    );
    Finding {
        count: dropped.count,
        category: Category::Health,
        ..Finding::new(
            RULE_SPOOL_OVERFLOW,
            Severity::High,
            summary,
            Timestamp::now(),
        )
    }
}

/// An `imds-node-guard` finding: the node-side IMDS guard stopped (or could not start)
/// checking what pods write on packet sockets, with the reason; or, with `error` `None`,
/// it runs again on `interfaces` interfaces.
pub fn imds_node_guard(error: Option<&str>, interfaces: usize) -> Finding {
    let (severity, summary) = match error {
        Some(error) => (
            Severity::Medium,
            format!(
                "the node-side IMDS guard cannot run, so frames pods write on packet sockets (CAP_NET_RAW) are not checked on this node: {error}; run the agent with hostNetwork (deploy/components/node-guard) or drop NET_RAW from pods"
            ),
        ),
        None => (
            Severity::Info,
            format!("the node-side IMDS guard runs again, on {interfaces} interfaces"),
        ),
    };
    Finding {
        category: Category::Health,
        ..Finding::new(RULE_IMDS_NODE_GUARD, severity, summary, Timestamp::now())
    }
}

/// `task_struct::comm` up to its first NUL, lossily decoded.
pub(crate) fn comm(raw: &[u8]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_become_health_findings() {
        let finding = lost("exec", 12);
        assert_eq!(
            (finding.rule_id.as_str(), finding.count, finding.category),
            ("events-lost", 12, Category::Health)
        );
        assert!(
            finding.summary.starts_with("12 exec reports"),
            "{}",
            finding.summary
        );
    }

    #[test]
    fn comm_stops_at_the_first_nul() {
        assert_eq!(comm(b"curl\0\0garbage"), "curl");
        assert_eq!(comm(b"sixteen-chars-xx"), "sixteen-chars-xx");
    }
}
