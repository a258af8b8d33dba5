//! Stored findings as OCSF events: runtime, enforcement and health findings become
//! Detection Findings (2004), posture findings Compliance Findings (2003).
//!
//! The target is OCSF 1.8.0, while every attribute OCSF 1.1 requires is filled too,
//! because Amazon Security Lake validates against 1.1. Where OCSF has no place for a
//! nodeward field it goes into `unmapped.nodeward`, so nothing the agent reported is lost.

use std::{net::IpAddr, path::Path};

use jiff::Timestamp;
use nodeward_proto::model::{
    Category, Container, Destination, Finding, FindingRecord, Pod, Process, Severity, Verdict,
};
use serde_json::{Map, Value, json};

/// The OCSF schema version the events follow.
pub const OCSF_VERSION: &str = "1.8.0";

const CATEGORY_FINDINGS: u32 = 2;
const CLASS_COMPLIANCE_FINDING: u32 = 2003;
const CLASS_DETECTION_FINDING: u32 = 2004;
/// Every stored finding is reported once, so it is always a "Create".
const ACTIVITY_CREATE: u32 = 1;
/// `status_id` 1: not yet reviewed; review happens in the SOC, not here.
const STATUS_NEW: u32 = 1;
/// The model carries no benchmark reference yet; every posture check nodeward runs
/// implements CIS Kubernetes Benchmark worker-node items (some also CIS EKS ones).
const POSTURE_STANDARD: &str = "CIS Kubernetes Benchmark";

/// The OCSF event for one stored finding.
pub fn to_ocsf(record: &FindingRecord) -> Value {
    let finding = &record.finding;
    let class = Class::of(finding.category);
    let (severity_id, severity) = severity(finding.severity);
    let mut event = json!({
        "activity_id": ACTIVITY_CREATE,
        "activity_name": "Create",
        "category_uid": CATEGORY_FINDINGS,
        "category_name": "Findings",
        "class_uid": class.uid(),
        "class_name": class.name(),
        "type_uid": class.uid() * 100 + ACTIVITY_CREATE,
        "type_name": format!("{}: Create", class.name()),
        "time": millis(finding.time),
        "severity_id": severity_id,
        "severity": severity,
        "status_id": STATUS_NEW,
        "status": "New",
        "message": finding.summary,
        "count": finding.count,
        "start_time": finding.first_seen.map(millis),
        "end_time": finding.last_seen.map(millis),
        "metadata": metadata(record, finding.verdict.is_some()),
        "finding_info": finding_info(record, class),
        "device": device(record),
        "actor": finding.process.as_ref().map(|p| json!({ "process": process(p, finding.parent.as_ref()) })),
        "unmapped": unmapped(finding),
    });
    let fields = event.as_object_mut().expect("a JSON object literal");
    match class {
        Class::Detection => {
            fields.insert("is_alert".into(), true.into());
            let resources: Vec<Value> = finding.pod.iter().map(pod_resource).collect();
            fields.insert("resources".into(), resources.into());
            if let Some(evidence) = evidence(finding) {
                fields.insert("evidences".into(), json!([evidence]));
            } else if let Some(container) = &finding.container {
                // An evidence needs an actor or an endpoint (OCSF's at_least_one);
                // a container alone has nowhere else to go.
                fields["unmapped"]["nodeward"]["container"] =
                    container_object(container, finding.pod.as_ref());
            }
        }
        Class::Compliance => {
            fields.insert("compliance".into(), compliance(finding));
            let mut resources = vec![node_resource(&record.node_name)];
            resources.extend(finding.pod.as_ref().map(pod_resource));
            fields.insert("resources".into(), resources.into());
        }
    }
    if let Some(verdict) = finding.verdict {
        // security_control profile: what nodeward did about the behaviour.
        let (action_id, action, disposition_id, disposition) = disposition(verdict);
        fields.insert("action_id".into(), action_id.into());
        fields.insert("action".into(), action.into());
        fields.insert("disposition_id".into(), disposition_id.into());
        fields.insert("disposition".into(), disposition.into());
        fields.insert("attacks".into(), attacks(&finding.techniques));
    }
    prune(&mut event);
    event
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Detection,
    Compliance,
}

impl Class {
    fn of(category: Category) -> Self {
        match category {
            Category::Posture => Self::Compliance,
            Category::Runtime | Category::Enforcement | Category::Health => Self::Detection,
        }
    }

    fn uid(self) -> u32 {
        match self {
            Self::Detection => CLASS_DETECTION_FINDING,
            Self::Compliance => CLASS_COMPLIANCE_FINDING,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Detection => "Detection Finding",
            Self::Compliance => "Compliance Finding",
        }
    }
}

fn metadata(record: &FindingRecord, security_control: bool) -> Value {
    let mut profiles = vec!["host"];
    if security_control {
        profiles.push("security_control");
    }
    json!({
        "version": OCSF_VERSION,
        "product": {
            "name": "nodeward",
            "vendor_name": "nodeward",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "uid": record.id.to_string(),
        "event_code": record.finding.rule_id,
        "original_time": record.finding.time.to_string(),
        "logged_time": millis(record.received_time),
        "sequence": record.finding.seq,
        "profiles": profiles,
    })
}

fn finding_info(record: &FindingRecord, class: Class) -> Value {
    let finding = &record.finding;
    let uid = match class {
        // Stable per (node, check): a rescan that reports the same check again updates
        // the SOC's finding instead of adding a duplicate.
        Class::Compliance => format!("nodeward:{}:{}", record.node_name, finding.rule_id),
        // Every runtime finding is a distinct occurrence; the store id is unique.
        Class::Detection => format!("nodeward:{}", record.id),
    };
    let desc = if finding.description.is_empty() {
        &finding.summary
    } else {
        &finding.description
    };
    json!({
        "uid": uid,
        "title": finding.rule_id,
        "desc": desc,
        "types": [category_name(finding.category)],
        "created_time": millis(finding.time),
        "first_seen_time": finding.first_seen.map(millis),
        "last_seen_time": finding.last_seen.map(millis),
        "analytic": {
            "uid": finding.rule_id,
            "name": finding.rule_id,
            "type_id": 1,
            "type": "Rule",
        },
        "attacks": attacks(&finding.techniques),
    })
}

fn device(record: &FindingRecord) -> Value {
    json!({
        "hostname": record.node_name,
        "name": record.node_name,
        // A Kubernetes node serves workloads, whether it is a VM or bare metal.
        "type_id": 1,
        "type": "Server",
        "boot_uid": record.boot_id,
    })
}

fn process(process: &Process, parent: Option<&Process>) -> Value {
    let parent = match parent {
        Some(parent) => Some(self::process(parent, None)),
        None if process.ppid != 0 => Some(json!({ "pid": process.ppid })),
        None => None,
    };
    let file = (!process.binary.is_empty()).then(|| {
        let name = Path::new(&process.binary).file_name().map_or_else(
            || process.binary.clone(),
            |n| n.to_string_lossy().into_owned(),
        );
        json!({ "name": name, "path": process.binary, "type_id": 1, "type": "Regular File" })
    });
    json!({
        "pid": process.pid,
        "name": process.comm,
        "cmd_line": (!process.args.is_empty()).then(|| process.args.join(" ")),
        "file": file,
        "user": { "uid": process.uid.to_string() },
        "parent_process": parent,
    })
}

/// What the detection saw: the acting process, its container and where it connected.
fn evidence(finding: &Finding) -> Option<Value> {
    if finding.process.is_none() && finding.destination.is_none() {
        return None;
    }
    let (dst_endpoint, connection_info) = finding.destination.as_ref().map(network).unzip();
    Some(json!({
        "actor": finding.process.as_ref().map(|p| json!({ "process": process(p, finding.parent.as_ref()) })),
        "container": finding.container.as_ref().map(|c| container_object(c, finding.pod.as_ref())),
        "dst_endpoint": dst_endpoint,
        "connection_info": connection_info,
    }))
}

fn network(destination: &Destination) -> (Value, Value) {
    let version = match destination.address {
        IpAddr::V4(_) => 4,
        IpAddr::V6(_) => 6,
    };
    (
        json!({ "ip": destination.address.to_string(), "port": destination.port }),
        json!({
            "protocol_name": destination.protocol.to_string(),
            "protocol_num": destination.protocol.ip_protocol(),
            "protocol_ver_id": version,
            // Sensors only see egress from pods.
            "direction_id": 2,
            "direction": "Outbound",
        }),
    )
}

fn container_object(container: &Container, pod: Option<&Pod>) -> Value {
    // OCSF requires `image.uid`; the runtime reports only the image reference, which is
    // what identifies the image to people.
    let image = (!container.image.is_empty())
        .then(|| json!({ "name": container.image, "uid": container.image }));
    json!({
        "uid": container.id,
        "name": container.name,
        "image": image,
        "orchestrator": "Kubernetes",
        "pod_uuid": pod.map(|p| p.uid.clone()),
    })
}

fn pod_resource(pod: &Pod) -> Value {
    let labels: Vec<String> = pod.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    json!({
        "uid": pod.uid,
        "name": pod.name,
        "namespace": pod.namespace,
        "type": "Kubernetes Pod",
        "labels": labels,
        "role_id": 3,
        "role": "Affected",
        // Kubernetes facts OCSF has no attribute for.
        "data": {
            "serviceAccount": pod.service_account,
            "hostNetwork": pod.host_network,
            "owner": pod.owner,
            "identityPending": pod.identity_pending,
        },
    })
}

fn node_resource(node: &str) -> Value {
    json!({
        "uid": node,
        "name": node,
        "hostname": node,
        "type": "Kubernetes Node",
        "role_id": 1,
        "role": "Target",
    })
}

fn compliance(finding: &Finding) -> Value {
    // A posture finding is only made when a check does not pass.
    json!({
        "standards": [POSTURE_STANDARD],
        "control": finding.rule_id,
        "desc": finding.summary,
        "status_id": 3,
        "status": "Fail",
    })
}

/// MITRE ATT&CK ids; a sub-technique (`T1552.005`) also names its technique.
fn attacks(techniques: &[String]) -> Value {
    techniques
        .iter()
        .map(|id| match id.split_once('.') {
            Some((technique, _)) => json!({
                "technique": { "uid": technique },
                "sub_technique": { "uid": id },
            }),
            None => json!({ "technique": { "uid": id } }),
        })
        .collect()
}

fn unmapped(finding: &Finding) -> Value {
    let process = finding.process.as_ref().map(|p| {
        json!({
            "cgroupId": p.cgroup_id,
            "gid": p.gid,
            "tty": p.tty,
            "truncated": p.truncated,
        })
    });
    json!({
        "nodeward": {
            "category": category_name(finding.category),
            "verdict": finding.verdict.map(verdict_name),
            "process": process,
        }
    })
}

fn severity(severity: Severity) -> (u32, &'static str) {
    match severity {
        Severity::Info => (1, "Informational"),
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

/// `(action_id, action, disposition_id, disposition)` of the `security_control` profile.
fn disposition(verdict: Verdict) -> (u32, &'static str, u32, &'static str) {
    match verdict {
        Verdict::Blocked => (2, "Denied", 2, "Blocked"),
        Verdict::Allowed => (1, "Allowed", 1, "Allowed"),
        // Audit mode let it through and reported it: "detected, no action taken".
        Verdict::Audited => (1, "Allowed", 15, "Detected"),
    }
}

fn category_name(category: Category) -> &'static str {
    match category {
        Category::Enforcement => "enforcement",
        Category::Runtime => "runtime",
        Category::Posture => "posture",
        Category::Health => "health",
    }
}

fn verdict_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Blocked => "blocked",
        Verdict::Audited => "audited",
        Verdict::Allowed => "allowed",
    }
}

fn millis(ts: Timestamp) -> i64 {
    ts.as_millisecond()
}

/// Drops nulls, empty strings, empty arrays and objects left empty: OCSF consumers read
/// an absent attribute as "unknown", and an empty one as a wrong value.
fn prune(value: &mut Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => {
            items.retain_mut(prune);
            !items.is_empty()
        }
        Value::Object(fields) => {
            let kept: Map<String, Value> = std::mem::take(fields)
                .into_iter()
                .filter_map(|(k, mut v)| prune(&mut v).then_some((k, v)))
                .collect();
            *fields = kept;
            !fields.is_empty()
        }
        Value::Bool(_) | Value::Number(_) => true,
    }
}

#[cfg(test)]
mod tests;
