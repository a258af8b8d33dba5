//! `nodeward-agent run` pointed at a simulated node: its cgroup tree as the pod cgroup,
//! a spool in the node's scratch directory, and a collector endpoint.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::node::SimNode;
use crate::probe::workspace_bin;
use crate::stack::Daemon;

/// What the agent's config says beyond the node's paths.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    /// The collector's gRPC endpoint.
    pub endpoint: String,
    /// Written under `imds:` when set, e.g. `mode: audit`.
    pub imds: Option<String>,
    /// Node name; defaults to the simulated node's id.
    pub node_name: Option<String>,
}

impl AgentSpec {
    /// An agent reporting to `endpoint` with default IMDS settings.
    #[must_use]
    pub fn new(endpoint: &str) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            imds: None,
            node_name: None,
        }
    }
}

/// A running agent. It runs in the test's own namespaces (so it reaches the collector on
/// loopback) and attaches to the node's pod cgroup, as a hostNetwork DaemonSet pod would.
#[derive(Debug)]
pub struct AgentProcess {
    daemon: Daemon,
    config: PathBuf,
    node_name: String,
}

impl AgentProcess {
    /// Writes the config and starts the agent. It is not yet enforcing when this returns:
    /// wait for a behaviour (a denied connect), not for time.
    #[must_use]
    pub fn start(node: &SimNode, spec: &AgentSpec) -> Self {
        let dir = node.scratch_dir();
        let node_name = spec
            .node_name
            .clone()
            .unwrap_or_else(|| node.id().to_owned());
        let mut yaml = format!(
            "nodeName: {node_name}\ncgroupRoot: {}\npodCgroupPath: {}\n\
             collector:\n  endpoint: {}\n  tls: disabled\n  spoolDir: {}\n",
            node.cgroup_root().display(),
            node.pod_cgroup_path().display(),
            spec.endpoint,
            dir.join("spool").display(),
        );
        if let Some(imds) = &spec.imds {
            let _ = writeln!(yaml, "imds:\n  {}", imds.replace('\n', "\n  "));
        }
        let config = dir.join("agent.yaml");
        std::fs::write(&config, yaml).unwrap_or_else(|e| panic!("write {}: {e}", config.display()));
        let mut command = Command::new(workspace_bin("nodeward-agent"));
        command
            .arg("run")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null());
        let daemon = Daemon::start(command, "nodeward-agent", &dir.join("agent.log"));
        Self {
            daemon,
            config,
            node_name,
        }
    }

    /// The config file it was started with.
    #[must_use]
    pub fn config(&self) -> &PathBuf {
        &self.config
    }

    /// The node name it reports as.
    #[must_use]
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// The process.
    pub fn daemon(&mut self) -> &mut Daemon {
        &mut self.daemon
    }
}
