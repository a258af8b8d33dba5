//! The `imds:` section: what pods may not reach, what happens when they try, and which
//! pods are exempt.

use std::collections::BTreeMap;

use ipnet::IpNet;
use nodeward_common::imds::MAX_BLOCKED_PREFIXES;
use serde::Deserialize;

/// What happens when a pod tries to reach a blocked address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ImdsMode {
    /// Refuse the connection (or drop the packet) and report it.
    #[default]
    Enforce,
    /// Let it through and report that it would have been refused.
    Audit,
    /// Neither refuse nor report.
    Off,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImdsConfig {
    #[serde(default)]
    pub mode: ImdsMode,
    /// Destinations pods may not reach.
    #[serde(default = "default_blocked_cidrs")]
    pub blocked_cidrs: Vec<IpNet>,
    /// Pods that may reach them anyway (the VPC CNI, node agents that need instance
    /// credentials).
    #[serde(default)]
    pub allow: Vec<AllowRule>,
    /// Repeated attempts from one container to one destination within this many seconds
    /// are reported once more at the end of the window, with their count.
    #[serde(default = "default_repeat_window")]
    pub repeat_window_seconds: u32,
}

impl Default for ImdsConfig {
    fn default() -> Self {
        Self {
            mode: ImdsMode::default(),
            blocked_cidrs: default_blocked_cidrs(),
            allow: Vec::new(),
            repeat_window_seconds: default_repeat_window(),
        }
    }
}

/// Selects pods by what every given field says; fields left out match anything, but at
/// least one must be given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AllowRule {
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub service_account: Option<String>,
    /// Every label here must be on the pod with this value.
    #[serde(default)]
    pub pod_labels: BTreeMap<String, String>,
}

impl AllowRule {
    /// Whether a pod with this identity is selected.
    pub fn matches(
        &self,
        namespace: &str,
        service_account: &str,
        labels: &BTreeMap<String, String>,
    ) -> bool {
        self.namespace.as_deref().is_none_or(|n| n == namespace)
            && self
                .service_account
                .as_deref()
                .is_none_or(|s| s == service_account)
            && self
                .pod_labels
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
    }

    fn is_empty(&self) -> bool {
        self.namespace.is_none() && self.service_account.is_none() && self.pod_labels.is_empty()
    }
}

/// The EC2 instance metadata service over IPv4 and IPv6 (Nitro). Only these two
/// addresses: 169.254.170.23 (EKS Pod Identity) and the rest of the link-local range must
/// stay reachable.
fn default_blocked_cidrs() -> Vec<IpNet> {
    ["169.254.169.254/32", "fd00:ec2::254/128"]
        .iter()
        .map(|s| s.parse().expect("valid built-in CIDR"))
        .collect()
}

fn default_repeat_window() -> u32 {
    60
}

impl ImdsConfig {
    pub(super) fn validate(&self) -> Result<(), String> {
        let limit = MAX_BLOCKED_PREFIXES as usize;
        for v4 in [true, false] {
            let count = self
                .blocked_cidrs
                .iter()
                .filter(|n| matches!(n, IpNet::V4(_)) == v4)
                .count();
            if count > limit {
                return Err(format!(
                    "imds.blockedCidrs: at most {limit} prefixes per address family, got {count}"
                ));
            }
        }
        if let Some(i) = self.allow.iter().position(AllowRule::is_empty) {
            return Err(format!(
                "imds.allow[{i}]: give at least one of namespace, serviceAccount, podLabels (an empty entry would allow every pod)"
            ));
        }
        if self.repeat_window_seconds == 0 {
            return Err("imds.repeatWindowSeconds: must be at least 1".into());
        }
        Ok(())
    }
}
