//! The resource's spec and status.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Node hardening settings for the nodes `nodeSelector` selects. Every selected policy is
/// merged over the agent's configuration file, ordered by `priority` then name (see the
/// agent's `policy` module for the rules).
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "nodeward.io",
    version = "v1alpha1",
    kind = "NodeHardeningPolicy",
    plural = "nodehardeningpolicies",
    shortname = "nhp",
    derive = "PartialEq",
    doc = "IMDS and detection-rule settings for the nodes a selector picks, merged by nodeward's agent over its configuration file.",
    status = "NodeHardeningPolicyStatus",
    printcolumn = r#"{"name":"Priority","type":"integer","jsonPath":".spec.priority"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.imds.mode"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct NodeHardeningPolicySpec {
    /// The nodes this policy applies to, by their labels; left out, every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<NodeSelector>,
    /// Merge order: policies apply from the lowest priority to the highest (then by name),
    /// so a higher priority wins where settings conflict.
    #[serde(default)]
    pub priority: i32,
    /// Instance metadata service protection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imds: Option<ImdsPolicy>,
    /// Changes to the detection rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<RulesPolicy>,
}

/// A label selector, as in `metav1.LabelSelector`: every `matchLabels` entry and every
/// `matchExpressions` requirement must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelRequirement>,
}

/// One requirement on a label.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelRequirement {
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// Required (non-empty) for `In` and `NotIn`, empty for `Exists` and `DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// The agent configuration's `imds` section, as a policy may set it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImdsPolicy {
    /// `enforce` (refuse and report), `audit` (allow and report) or `off`; left out, this
    /// policy does not decide the mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["enforce", "audit", "off"]))]
    pub mode: Option<String>,
    /// More destinations pods may not reach (CIDRs, e.g. `169.254.169.254/32`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_cidrs: Vec<String>,
    /// More pods that may reach them anyway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<AllowEntry>,
}

/// Selects pods by every field given; at least one must be.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllowEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Every label here must be on the pod with this value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
}

/// The agent configuration's `rules` section, as a policy may change it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RulesPolicy {
    /// Ids of rules that do not run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disabled: Vec<String>,
    /// Ids of rules that run again although the configuration file or a policy of lower
    /// priority disabled them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enabled: Vec<String>,
    /// More exceptions for a rule, by rule id: the rule does not fire when any of these
    /// condition sets holds.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exceptions: BTreeMap<String, Vec<RuleConditions>>,
}

/// Conditions that must all hold, as in the agent's rule language: lists mean "any of",
/// names are glob patterns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleConditions {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub binary: Vec<String>,
    /// Substrings, any of which in the argv (joined with spaces).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args_contain: Vec<String>,
    /// A regular expression over the argv joined with spaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_regex: Option<String>,
    /// Whether the process has a controlling terminal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parent_binary: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespace: Vec<String>,
    /// Every label here, with this value, on the pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The container's image (`registry/repo:tag`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image: Vec<String>,
    /// CIDRs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_cidr: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port: Vec<u16>,
    /// `tcp` or `udp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["tcp", "udp"]))]
    pub protocol: Option<String>,
}

/// What the agents concluded about the policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeHardeningPolicyStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<PolicyCondition>,
}

/// The condition type agents set: `True` when the policy is valid and in force on the
/// nodes it selects, `False` (reason [`REASON_INVALID`]) when it was rejected whole.
pub const CONDITION_ACCEPTED: &str = "Accepted";
/// Reason of an `Accepted=True` condition.
pub const REASON_VALID: &str = "Valid";
/// Reason of an `Accepted=False` condition; the message says what is wrong.
pub const REASON_INVALID: &str = "Invalid";

/// A condition, as in `metav1.Condition`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyCondition {
    /// [`CONDITION_ACCEPTED`].
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// One CamelCase word: [`REASON_VALID`] or [`REASON_INVALID`].
    pub reason: String,
    /// For people: what is wrong with the policy, field by field.
    #[serde(default)]
    pub message: String,
    /// The policy's `metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the status last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

impl NodeHardeningPolicyStatus {
    /// The `Accepted` condition, if an agent set one.
    pub fn accepted(&self) -> Option<&PolicyCondition> {
        self.conditions
            .iter()
            .find(|c| c.type_ == CONDITION_ACCEPTED)
    }
}
