//! Agent configuration: YAML with camelCase keys, Kubernetes style. Unknown keys are
//! errors, and every error names the file (and, for YAML errors, the line and key).

mod imds;
mod startup_taint;

use std::path::PathBuf;

use nodeward_runtime::{
    config::Validate,
    tls::{TlsFiles, TlsMode},
};
use serde::Deserialize;

pub use self::imds::{AllowRule, ImdsConfig, ImdsMode};
pub use self::startup_taint::StartupTaintConfig;
use crate::{policy::PoliciesConfig, posture::config::PostureConfig, rules::spec::RulesConfig};

/// PID 1's network namespace: the node's, as the agent runs with `hostPID`. Joining it
/// takes no privilege when the agent already runs there (`hostNetwork`), and
/// `CAP_SYS_ADMIN` otherwise.
pub const DEFAULT_HOST_NETNS: &str = "/proc/1/ns/net";

/// The agent's configuration as written in its file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Name of this node; defaults to the `NODE_NAME` environment variable.
    #[serde(default)]
    pub node_name: Option<String>,
    /// The cluster this node belongs to, as the collector should show it.
    #[serde(default)]
    pub cluster_name: Option<String>,
    /// The node's root filesystem as the agent sees it (e.g. `/host` in its pod), for
    /// the posture scan; default: this root.
    #[serde(default)]
    pub host_root: Option<PathBuf>,
    /// The node's network namespace, where the node-side IMDS guard attaches to the
    /// interfaces that lead to the blocked prefixes; default [`DEFAULT_HOST_NETNS`].
    /// Simulated nodes point it at theirs.
    #[serde(default)]
    pub host_netns: Option<PathBuf>,
    /// `/metrics`, `/healthz` and `/readyz` (plain HTTP, for Prometheus and probes).
    #[serde(default = "default_http_listen")]
    pub http_listen: std::net::SocketAddr,
    /// Where cgroup2 is mounted; defaults to the mount found in /proc/self/mountinfo.
    #[serde(default)]
    pub cgroup_root: Option<PathBuf>,
    /// The cgroup holding every pod, relative to `cgroupRoot`; defaults to whichever of
    /// `kubepods.slice` (systemd driver) and `kubepods` (cgroupfs driver) exists.
    #[serde(default)]
    pub pod_cgroup_path: Option<PathBuf>,
    /// bpffs directory where programs, links and maps stay pinned, so enforcement outlives
    /// the agent process (crash, upgrade) until `nodeward-agent uninstall`.
    #[serde(default = "default_bpf_pin_path")]
    pub bpf_pin_path: PathBuf,
    #[serde(default)]
    pub imds: ImdsConfig,
    /// Where pod metadata (namespace, name, labels, owner, ...) comes from.
    #[serde(default)]
    pub pods: PodsConfig,
    /// The runtime sensors.
    #[serde(default)]
    pub sensors: SensorsConfig,
    /// Continuous kubelet and node posture checks.
    #[serde(default)]
    pub posture: PostureConfig,
    /// Changes to the built-in detection rules, and rules of this cluster's own.
    #[serde(default)]
    pub rules: RulesConfig,
    /// `NodeHardeningPolicy` objects merged over this file (`policies: {enabled: ...}`).
    #[serde(default)]
    pub policies: PoliciesConfig,
    /// The taint lifted from this node once IMDS enforcement is attached.
    #[serde(default)]
    pub startup_taint: StartupTaintConfig,
    pub collector: CollectorConfig,
}

/// Where pod metadata comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodsConfig {
    /// Defaults to `file` when `file` is set, else `kubernetes`.
    #[serde(default)]
    pub source: Option<PodSource>,
    /// YAML `{pods: [{uid, name, namespace, serviceAccount, labels, hostNetwork, owner,
    /// containers}]}`, re-read when it changes (source `file`).
    #[serde(default)]
    pub file: Option<PathBuf>,
}

/// The pod metadata source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PodSource {
    /// A watch on this node's pods through the Kubernetes API (in-cluster service account,
    /// or a kubeconfig outside a cluster).
    Kubernetes,
    /// `pods.file` (tests, demos, nodes without an API server).
    File,
    /// None: findings carry the pod UID only, marked `identityPending`.
    None,
}

impl PodsConfig {
    /// The source in force, after the default.
    pub fn source(&self) -> PodSource {
        self.source.unwrap_or(if self.file.is_some() {
            PodSource::File
        } else {
            PodSource::Kubernetes
        })
    }
}

/// Which runtime sensors run, and on what.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SensorsConfig {
    /// Report every exec (binary, argv, terminal, parent).
    #[serde(default = "yes")]
    pub exec: bool,
    /// Report every new destination pods connect or send to.
    #[serde(default = "yes")]
    pub egress: bool,
    /// Watch the whole node, not only processes below the pod cgroup.
    #[serde(default)]
    pub host_processes: bool,
    /// With `host_processes`, the cgroup node processes' connections are watched from,
    /// relative to the cgroup root; empty (the default) is the root itself.
    #[serde(default)]
    pub host_cgroup_path: PathBuf,
}

impl Default for SensorsConfig {
    fn default() -> Self {
        Self {
            exec: true,
            egress: true,
            host_processes: false,
            host_cgroup_path: PathBuf::new(),
        }
    }
}

fn yes() -> bool {
    true
}

fn stays_below(path: &std::path::Path) -> bool {
    !path.is_absolute()
        && !path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
}

fn default_http_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([0, 0, 0, 0], 9436))
}

fn default_bpf_pin_path() -> PathBuf {
    PathBuf::from("/sys/fs/bpf/nodeward")
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CollectorConfig {
    /// gRPC endpoint, e.g. `https://nodeward-collector.nodeward.svc:7443`.
    pub endpoint: String,
    /// `mutual` (the agent's certificate names its node) or `disabled` (plaintext, for
    /// tests and demos); required, so that plaintext is always written down.
    pub tls: TlsMode,
    /// CA bundle the collector's certificate must chain to (`tls: mutual`).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// This node's client certificate (`tls: mutual`).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Its private key (`tls: mutual`).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Directory of the on-disk outbox.
    #[serde(default = "default_spool_dir")]
    pub spool_dir: PathBuf,
    /// Most bytes of findings the outbox keeps while the collector is unreachable; beyond
    /// it the oldest are dropped, counted and reported.
    #[serde(default = "default_spool_max_bytes")]
    pub spool_max_bytes: u64,
    /// Get `certFile` from the collector, for this node, with the pod's service account
    /// token, and renew it before it expires (off when absent; `tls: mutual` only).
    #[serde(default)]
    pub enrollment: Option<EnrollmentConfig>,
}

/// `collector.enrollment`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnrollmentConfig {
    /// The pod's projected service account token for the collector's audience
    /// (`nodeward-collector`); read at every request, as the kubelet rotates it.
    #[serde(default = "default_token_file")]
    pub token_file: PathBuf,
}

fn default_token_file() -> PathBuf {
    PathBuf::from("/var/run/secrets/nodeward/token")
}

/// Smallest `spoolMaxBytes`: room for a few thousand findings.
const MIN_SPOOL_BYTES: u64 = 64 * 1024;

fn default_spool_max_bytes() -> u64 {
    256 * 1024 * 1024
}

impl CollectorConfig {
    /// The TLS files when `tls: mutual`.
    pub fn tls_files(&self) -> Result<Option<TlsFiles>, String> {
        TlsFiles::from_config(
            "collector.",
            self.tls,
            self.ca_file.as_deref(),
            self.cert_file.as_deref(),
            self.key_file.as_deref(),
        )
    }
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
            "node {node}; pod cgroup {pods}; IMDS {:?} for {}; collector {} (TLS {:?}{}), spool {}",
            self.imds.mode,
            cidrs.join(", "),
            self.collector.endpoint,
            self.collector.tls,
            if self.collector.enrollment.is_some() {
                ", enrollment"
            } else {
                ""
            },
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
        self.imds.validate()?;
        self.posture.validate()?;
        self.startup_taint.validate()?;
        if let Some(root) = &self.host_root
            && !root.is_absolute()
        {
            return Err(format!(
                "hostRoot: {} must be an absolute path",
                root.display()
            ));
        }
        crate::rules::RuleSet::build(&self.rules)?;
        match (self.pods.source(), &self.pods.file) {
            (PodSource::File, None) => {
                return Err("pods.file: required when pods.source is file".to_owned());
            }
            (PodSource::Kubernetes | PodSource::None, Some(file)) => {
                return Err(format!(
                    "pods.file: {} is set but pods.source is {:?}; remove one",
                    file.display(),
                    self.pods.source()
                ));
            }
            _ => {}
        }
        for (key, path) in [
            ("podCgroupPath", self.pod_cgroup_path.as_ref()),
            (
                "sensors.hostCgroupPath",
                Some(&self.sensors.host_cgroup_path),
            ),
        ] {
            if let Some(p) = path
                && !stays_below(p)
            {
                return Err(format!(
                    "{key}: must be relative to cgroupRoot and stay below it, got {}",
                    p.display()
                ));
            }
        }
        if let Some(netns) = &self.host_netns
            && !netns.is_absolute()
        {
            return Err(format!(
                "hostNetns: must be an absolute path, got {}",
                netns.display()
            ));
        }
        if !self.bpf_pin_path.is_absolute() {
            return Err(format!(
                "bpfPinPath: must be an absolute path, got {}",
                self.bpf_pin_path.display()
            ));
        }
        let tls = self.collector.tls_files()?;
        let https = self.collector.endpoint.starts_with("https://");
        if tls.is_some() != https {
            return Err(format!(
                "collector.endpoint: {:?} does not match collector.tls: {:?} (mutual needs https://, disabled http://)",
                self.collector.endpoint, self.collector.tls
            ));
        }
        if self.collector.enrollment.is_some() && tls.is_none() {
            return Err(
                "collector.enrollment: needs collector.tls: mutual (it obtains the certificate mutual TLS uses)"
                    .to_owned(),
            );
        }
        if self.collector.spool_max_bytes < MIN_SPOOL_BYTES {
            return Err(format!(
                "collector.spoolMaxBytes: at least {MIN_SPOOL_BYTES}, got {}",
                self.collector.spool_max_bytes
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
