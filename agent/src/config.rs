//! Agent configuration: YAML with camelCase keys, Kubernetes style. Unknown keys are
//! errors, and every error names the file (and, for YAML errors, the line and key).

use std::path::PathBuf;

use ipnet::IpNet;
use nodeward_runtime::config::Validate;
use serde::Deserialize;

/// The agent's configuration as written in its file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Name of this node; defaults to the `NODE_NAME` environment variable.
    #[serde(default)]
    pub node_name: Option<String>,
    /// Where cgroup2 is mounted; defaults to the mount found in /proc/self/mountinfo.
    #[serde(default)]
    pub cgroup_root: Option<PathBuf>,
    /// The cgroup holding every pod, relative to `cgroupRoot`; defaults to whichever of
    /// `kubepods.slice` (systemd driver) and `kubepods` (cgroupfs driver) exists.
    #[serde(default)]
    pub pod_cgroup_path: Option<PathBuf>,
    #[serde(default)]
    pub imds: ImdsConfig,
    pub collector: CollectorConfig,
}

/// What happens when a pod tries to reach the instance metadata service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ImdsMode {
    /// Refuse the connection and report it.
    #[default]
    Enforce,
    /// Let it through and report that it would have been refused.
    Audit,
    /// Neither refuse nor report.
    Off,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImdsConfig {
    #[serde(default)]
    pub mode: ImdsMode,
    /// Destinations pods may not reach.
    #[serde(default = "default_blocked_cidrs")]
    pub blocked_cidrs: Vec<IpNet>,
}

impl Default for ImdsConfig {
    fn default() -> Self {
        Self {
            mode: ImdsMode::default(),
            blocked_cidrs: default_blocked_cidrs(),
        }
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

/// Whether the collector link is encrypted. Only `disabled` exists so far; it is meant for
/// local tests and demos and is logged as a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TlsMode {
    Disabled,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CollectorConfig {
    /// gRPC endpoint, e.g. `http://nodeward-collector.nodeward:7443`.
    pub endpoint: String,
    pub tls: TlsMode,
    /// Directory of the on-disk outbox.
    #[serde(default = "default_spool_dir")]
    pub spool_dir: PathBuf,
}

fn default_spool_dir() -> PathBuf {
    PathBuf::from("/var/lib/nodeward/spool")
}

impl Config {
    /// One line on what this configuration sets, for people.
    pub fn summary(&self) -> String {
        let node = self
            .node_name
            .as_deref()
            .map_or_else(|| "from $NODE_NAME".to_owned(), |n| format!("{n:?}"));
        let cidrs: Vec<String> = self
            .imds
            .blocked_cidrs
            .iter()
            .map(ToString::to_string)
            .collect();
        let pods = self
            .pod_cgroup_path
            .as_ref()
            .map_or_else(|| "auto-detected".to_owned(), |p| p.display().to_string());
        format!(
            "node {node}; pod cgroup {pods}; IMDS {:?} for {}; collector {} (TLS {:?}), spool {}",
            self.imds.mode,
            cidrs.join(", "),
            self.collector.endpoint,
            self.collector.tls,
            self.collector.spool_dir.display()
        )
        .to_lowercase()
    }

    /// The node name from the file, else from `NODE_NAME`.
    pub fn resolved_node_name(&self) -> Option<String> {
        self.node_name
            .clone()
            .or_else(|| std::env::var("NODE_NAME").ok())
            .filter(|n| !n.is_empty())
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), String> {
        let limit = nodeward_common::imds::MAX_BLOCKED_PREFIXES as usize;
        for family in [true, false] {
            let count = self
                .imds
                .blocked_cidrs
                .iter()
                .filter(|n| matches!(n, IpNet::V4(_)) == family)
                .count();
            if count > limit {
                return Err(format!(
                    "imds.blockedCidrs: at most {limit} prefixes per address family, got {count}"
                ));
            }
        }
        if let Some(p) = &self.pod_cgroup_path
            && (p.is_absolute()
                || p.components()
                    .any(|c| matches!(c, std::path::Component::ParentDir)))
        {
            return Err(format!(
                "podCgroupPath: must be relative to cgroupRoot and stay below it, got {}",
                p.display()
            ));
        }
        if !(self.collector.endpoint.starts_with("http://")
            || self.collector.endpoint.starts_with("https://"))
        {
            return Err(format!(
                "collector.endpoint: expected an http:// or https:// URL, got {:?}",
                self.collector.endpoint
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
