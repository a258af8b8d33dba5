//! Domain types: what a finding means, independent of how it travels. These serialize to
//! the JSON that `nodeward-collector tail --format json` prints (camelCase, like
//! Kubernetes), so their field names are a contract too.

use std::{collections::BTreeMap, fmt, net::IpAddr};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// What kind of thing a finding is about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// nodeward refused something (IMDS enforcement).
    Enforcement,
    /// A detection rule fired on runtime behaviour.
    #[default]
    Runtime,
    /// A node's configuration regressed.
    Posture,
    /// nodeward's own health: lost events, silent nodes.
    Health,
}

/// How urgently a finding needs a person.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

/// What nodeward did about the behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Blocked,
    Audited,
    Allowed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    /// Another IP protocol, by IANA number.
    Other(u8),
}

impl Protocol {
    /// Maps an `IPPROTO_*` number.
    #[must_use]
    pub fn from_ip_protocol(number: u8) -> Self {
        match number {
            6 => Self::Tcp,
            17 => Self::Udp,
            n => Self::Other(n),
        }
    }

    /// The IANA protocol number.
    #[must_use]
    pub fn ip_protocol(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
            Self::Other(n) => n,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp => f.write_str("tcp"),
            Self::Udp => f.write_str("udp"),
            Self::Other(n) => write!(f, "ip-proto-{n}"),
        }
    }
}

/// The pod a finding is attributed to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    pub uid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account: String,
    #[serde(default)]
    pub host_network: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Only the UID was known when the finding was made; the rest is empty on purpose.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub identity_pending: bool,
    /// The controlling workload, e.g. `Deployment/web`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub owner: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    pub pid: u32,
    #[serde(default)]
    pub ppid: u32,
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    pub comm: String,
    pub cgroup_id: u64,
    /// Path of the executable; empty when unknown.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub binary: String,
    /// argv; empty when unknown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// The process has a controlling terminal.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
    /// argv or the binary path was cut to the sensor's limit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
}

/// One thing an agent saw on its node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// Per-node sequence number; 0 until the agent's outbox assigns one.
    pub seq: u64,
    pub time: Timestamp,
    pub rule_id: String,
    pub severity: Severity,
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Pod>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Occurrences this finding stands for (at least 1).
    #[serde(default = "one")]
    pub count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Timestamp>,
    #[serde(default)]
    pub category: Category,
    /// MITRE ATT&CK technique ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub techniques: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Process>,
    /// Longer explanation of the rule, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

fn one() -> u64 {
    1
}

impl Finding {
    /// A finding with only its required fields; the optional ones start empty.
    pub fn new(
        rule_id: impl Into<String>,
        severity: Severity,
        summary: impl Into<String>,
        time: Timestamp,
    ) -> Self {
        Self {
            seq: 0,
            time,
            rule_id: rule_id.into(),
            severity,
            summary: summary.into(),
            pod: None,
            container: None,
            process: None,
            destination: None,
            verdict: None,
            count: 1,
            first_seen: None,
            last_seen: None,
            category: Category::default(),
            techniques: Vec::new(),
            parent: None,
            description: String::new(),
        }
    }
}

/// A finding as the collector stored it: what a SOC consumer receives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FindingRecord {
    /// Unique and increasing in storage order (not contiguous); the resume cursor.
    pub id: u64,
    pub node_name: String,
    pub boot_id: String,
    pub received_time: Timestamp,
    pub finding: Finding,
}

/// A posture check's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Pass,
    Fail,
    /// Worth a look, not a failure (e.g. a certificate expiring soon).
    Warn,
    /// Could not be judged: missing, unreadable or unparsable input. Never a pass.
    Error,
}

/// One posture check's verdict on one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostureCheck {
    pub id: String,
    pub title: String,
    /// `"<benchmark>:<item>"`, e.g. `"cis-eks-1.8.0:3.2.1"`.
    pub benchmarks: Vec<String>,
    pub status: CheckStatus,
    pub observed: String,
    pub expected: String,
    /// `flag --x`, `config FILE`, `drop-in FILE`, `default`, or the file judged.
    pub source: String,
    pub remediation: String,
}

/// A node's posture as one scan saw it, and what the agent enforces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostureSnapshot {
    /// Increases with every snapshot one agent outbox makes.
    pub generation: u64,
    pub time: Timestamp,
    /// `enforce`, `audit` or `off`.
    pub imds_mode: String,
    pub checks: Vec<PostureCheck>,
    /// Why the scan could not run (then `checks` is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_error: Option<String>,
    /// The `NodeHardeningPolicy` generation enforced, when policies are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_generation: Option<String>,
}

impl PostureSnapshot {
    /// Ids of the checks that fail.
    pub fn failing(&self) -> impl Iterator<Item = &str> {
        self.checks
            .iter()
            .filter(|c| c.status == CheckStatus::Fail)
            .map(|c| c.id.as_str())
    }
}

/// Which findings a SOC consumer wants: every non-empty part must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FindingFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<Category>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rule_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// Pod namespaces; a finding without a pod never matches a namespace filter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
}

impl FindingFilter {
    /// Whether `record` passes the filter.
    pub fn matches(&self, record: &FindingRecord) -> bool {
        let f = &record.finding;
        self.min_severity.is_none_or(|min| f.severity >= min)
            && (self.categories.is_empty() || self.categories.contains(&f.category))
            && (self.rule_ids.is_empty() || self.rule_ids.contains(&f.rule_id))
            && (self.nodes.is_empty() || self.nodes.contains(&record.node_name))
            && (self.namespaces.is_empty()
                || f.pod
                    .as_ref()
                    .is_some_and(|p| self.namespaces.contains(&p.namespace)))
    }

    /// Whether the filter lets everything through.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}
