//! Store records → `SocService` responses.

use jiff::Timestamp;
use nodeward_proto::v1;

use crate::store::{FleetSummary, NodeRecord};

fn wire_time(ts: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ts.as_second(),
        nanos: ts.subsec_nanosecond(),
    }
}

pub fn node_summary(node: NodeRecord) -> v1::NodeSummary {
    let (imds_mode, failing_checks, posture_time, scan_error) = match &node.posture {
        Some(posture) => (
            posture.snapshot.imds_mode.clone(),
            posture.snapshot.failing().map(str::to_owned).collect(),
            Some(wire_time(posture.snapshot.time)),
            posture.snapshot.scan_error.clone().unwrap_or_default(),
        ),
        None => (String::new(), Vec::new(), None, String::new()),
    };
    v1::NodeSummary {
        node_name: node.name,
        cluster: node.cluster,
        agent_version: node.agent_version,
        boot_id: node.boot_id,
        last_seen: Some(wire_time(node.last_seen)),
        silent: node.silent,
        imds_mode,
        failing_checks,
        posture_time,
        scan_error,
    }
}

pub fn node_posture(node: NodeRecord) -> v1::NodePosture {
    let (snapshot, received_time) = match node.posture {
        Some(posture) => (
            Some(posture.snapshot.into()),
            Some(wire_time(posture.received)),
        ),
        None => (None, None),
    };
    v1::NodePosture {
        node_name: node.name,
        snapshot,
        received_time,
    }
}

pub fn fleet_posture(fleet: FleetSummary) -> v1::FleetPosture {
    v1::FleetPosture {
        nodes: fleet.nodes,
        checks: fleet
            .checks
            .into_iter()
            .map(|check| v1::CheckSummary {
                id: check.id,
                title: check.title,
                benchmarks: check.benchmarks,
                passing: check.passing,
                failing: check.failing,
                other: check.other,
                failing_nodes: check.failing_nodes,
            })
            .collect(),
    }
}
