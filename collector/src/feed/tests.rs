//! The feed over real stores: group commit (SQLite and PostgreSQL) and the live feed of
//! several collector replicas sharing one PostgreSQL database.

mod backend;
mod group_commit;
mod replicas;

use jiff::Timestamp;
use nodeward_proto::model::{self, Finding, Severity};

use crate::store::Origin;

fn origin(node: &str) -> Origin {
    Origin {
        node_name: node.into(),
        stream_id: "stream".into(),
        boot_id: "boot".into(),
        agent_version: "0.1.0".into(),
        cluster: "prod".into(),
    }
}

fn finding(seq: u64) -> Finding {
    Finding {
        seq,
        ..Finding::new(
            "imds-access",
            Severity::High,
            format!("attempt {seq}"),
            Timestamp::now(),
        )
    }
}

fn batch(from: u64, len: u64) -> Vec<Finding> {
    (from..from + len).map(finding).collect()
}

/// Only `node`'s findings.
fn node_filter(node: &str) -> model::FindingFilter {
    model::FindingFilter {
        nodes: vec![node.to_owned()],
        ..model::FindingFilter::default()
    }
}
