//! `nodeward-agent run` pointed at a simulated node: its cgroup tree as the pod cgroup,
//! its private bpffs for pins, its pods file for metadata, a spool in its scratch
//! directory, and a collector endpoint.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use crate::node::SimNode;
use crate::probe::workspace_bin;
use crate::stack::Daemon;

/// What the agent's config says beyond the node's paths.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    /// The collector's gRPC endpoint.
    pub endpoint: String,
    /// YAML written under `imds:` when set, e.g. `"mode: audit"`; several lines allowed.
    pub imds: Option<String>,
    /// Node name; defaults to the simulated node's id.
    pub node_name: Option<String>,
    /// Whether `pods.file` points at the node's pods file (written from its pods; call
    /// [`AgentProcess::write_pods`] after adding pods).
    pub pods_file: bool,
    /// Names a second agent on the same node: its config, spool, logs and pins live
    /// apart from the first one's.
    pub instance: Option<String>,
    /// Mutual TLS: the certificates directory and the stem of the client certificate
    /// (`node-a` for `node-a.crt`/`node-a.key`).
    pub tls: Option<(PathBuf, String)>,
    /// YAML appended to the config (top-level keys).
    pub extra_yaml: String,
    /// `collector.spoolMaxBytes`.
    pub spool_max_bytes: Option<u64>,
    /// A program (and its arguments) the agent is started through, e.g. `setpriv` to
    /// run it with fewer capabilities; it must end by exec'ing the command after it.
    pub launcher: Vec<String>,
    /// `collector.enrollment.tokenFile`: the agent gets its certificate from the collector.
    pub enrollment_token: Option<PathBuf>,
}

impl AgentSpec {
    /// An agent reporting to `endpoint` with default IMDS settings and no pod metadata.
    #[must_use]
    pub fn new(endpoint: &str) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            imds: None,
            node_name: None,
            pods_file: false,
            instance: None,
            tls: None,
            extra_yaml: String::new(),
            spool_max_bytes: None,
            launcher: Vec::new(),
            enrollment_token: None,
        }
    }

    /// Starts the agent through `launcher` (a program and its arguments).
    #[must_use]
    pub fn launcher(mut self, launcher: &[&str]) -> Self {
        self.launcher = launcher.iter().map(|&a| a.to_owned()).collect();
        self
    }

    /// Enrolls for the client certificate (see [`AgentSpec::tls`] for where it goes) with
    /// the service account token in `token_file`.
    #[must_use]
    pub fn enrollment(mut self, token_file: &Path) -> Self {
        self.enrollment_token = Some(token_file.to_owned());
        self
    }

    /// Reports over mutual TLS with `certs/<cert>.crt` (see [`crate::certs::write_certs`]).
    #[must_use]
    pub fn tls(mut self, certs: &Path, cert: &str) -> Self {
        self.tls = Some((certs.to_owned(), cert.to_owned()));
        self
    }

    /// Bounds the agent's spool.
    #[must_use]
    pub fn spool_max_bytes(mut self, bytes: u64) -> Self {
        self.spool_max_bytes = Some(bytes);
        self
    }

    /// Appends top-level YAML to the config.
    #[must_use]
    pub fn extra_yaml(mut self, yaml: &str) -> Self {
        self.extra_yaml.push_str(yaml);
        self
    }

    /// Reports as `name` rather than the node's id.
    #[must_use]
    pub fn node_name(mut self, name: &str) -> Self {
        self.node_name = Some(name.to_owned());
        self
    }

    /// Makes this a separate agent instance named `name` (see [`AgentSpec::instance`]).
    #[must_use]
    pub fn instance(mut self, name: &str) -> Self {
        self.instance = Some(name.to_owned());
        self
    }

    /// The directory of this instance's files in the node's scratch directory.
    fn dir(&self, node: &SimNode) -> PathBuf {
        let dir = self.instance.as_ref().map_or_else(
            || node.scratch_dir().to_owned(),
            |name| node.scratch_dir().join(name),
        );
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        dir
    }

    /// Where this instance pins (its `bpfPinPath`), on the node's bpffs.
    #[must_use]
    pub fn pins(&self, node: &SimNode) -> PathBuf {
        node.bpffs()
            .join(self.instance.as_deref().unwrap_or("nodeward"))
    }

    /// Where this instance pins the packet hook of the cgroup with this id (the agent's
    /// `imds_egress_cg<id>` link).
    #[must_use]
    pub fn packet_hook_pin(&self, node: &SimNode, cgroup_id: u64) -> PathBuf {
        self.pins(node)
            .join("v1/links")
            .join(format!("imds_egress_cg{cgroup_id}"))
    }

    /// Sets the `imds:` section.
    #[must_use]
    pub fn imds(mut self, yaml: &str) -> Self {
        self.imds = Some(yaml.to_owned());
        self
    }

    /// Points `pods.file` at the node's pods file.
    #[must_use]
    pub fn with_pods_file(mut self) -> Self {
        self.pods_file = true;
        self
    }
}

/// A running agent. It runs in the test's own namespaces (so it reaches the collector on
/// loopback) and attaches to the node's pod cgroup, as a hostNetwork DaemonSet pod would.
#[derive(Debug)]
pub struct AgentProcess {
    daemon: Daemon,
    config: PathBuf,
    pods: PathBuf,
    log: PathBuf,
    node_name: String,
    starts: u32,
    launcher: Vec<String>,
}

impl AgentProcess {
    /// Writes the config (and the pods file) and starts the agent. It is not yet enforcing
    /// when this returns: wait for a behaviour (a denied connect), not for time.
    #[must_use]
    pub fn start(node: &SimNode, spec: &AgentSpec) -> Self {
        let dir = spec.dir(node);
        let node_name = spec
            .node_name
            .clone()
            .unwrap_or_else(|| node.id().to_owned());
        let config = dir.join("agent.yaml");
        let pods = dir.join("pods.yaml");
        node.write_pods_file(&pods);
        write_config(node, spec, &config, &pods, &node_name);
        let log = dir.join("agent.log");
        let daemon = spawn(&config, &log, &spec.launcher);
        Self {
            daemon,
            config,
            pods,
            log,
            node_name,
            starts: 1,
            launcher: spec.launcher.clone(),
        }
    }

    /// Rewrites the config file the agent watches (it applies `imds` changes live).
    pub fn rewrite_config(&self, node: &SimNode, spec: &AgentSpec) {
        write_config(node, spec, &self.config, &self.pods, &self.node_name);
    }

    /// Rewrites the pods file from the node's current pods.
    pub fn write_pods(&self, node: &SimNode) {
        node.write_pods_file(&self.pods);
    }

    /// Kills the agent with SIGKILL, as a crash or an OOM kill would, and reaps it.
    pub fn kill(&mut self) -> ExitStatus {
        self.daemon.kill()
    }

    /// Starts the agent again with the same config, spool and pins (after [`kill`] or a
    /// graceful stop); its log continues in a new file.
    ///
    /// [`kill`]: AgentProcess::kill
    pub fn restart(&mut self) {
        self.starts += 1;
        self.log = self
            .log
            .with_file_name(format!("agent.{}.log", self.starts));
        self.daemon = spawn(&self.config, &self.log, &self.launcher);
    }

    /// Waits (up to 30 s) until the agent says every module is running (IMDS programs
    /// attached, sensors started); panics with its log if it exits first.
    pub fn wait_active(&mut self) {
        let daemon = &mut self.daemon;
        crate::wait::wait_until(
            std::time::Duration::from_secs(30),
            "the agent to start all its modules",
            || {
                assert!(daemon.is_running(), "the agent exited:\n{}", daemon.log());
                daemon
                    .log()
                    .contains("nodeward agent running")
                    .then_some(())
            },
        );
    }

    /// The value of the Prometheus sample `series` (e.g.
    /// `nodeward_events_total{source="imds"}`) on the agent's `/metrics`, or `None`
    /// when the agent does not report it (yet).
    #[must_use]
    pub fn metric(&mut self, series: &str) -> Option<f64> {
        let log = self.daemon.log();
        let addr = log
            .lines()
            .rev()
            .find(|l| l.contains("metrics listening"))?
            .split("addr=")
            .nth(1)?
            .split_whitespace()
            .next()?
            .to_owned();
        crate::stack::scrape(&addr, series)
    }

    /// The config file it runs with.
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

fn spawn(config: &Path, log: &Path, launcher: &[String]) -> Daemon {
    let agent = workspace_bin("nodeward-agent");
    let mut command = match launcher.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(agent);
            command
        }
        None => Command::new(agent),
    };
    command
        .arg("run")
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null());
    Daemon::start(command, "nodeward-agent", log)
}

fn write_config(node: &SimNode, spec: &AgentSpec, path: &Path, pods: &Path, node_name: &str) {
    let tls = spec.tls.as_ref().map_or_else(
        || "disabled".to_owned(),
        |(certs, cert)| {
            format!(
                "mutual\n  caFile: {}\n  certFile: {}\n  keyFile: {}",
                certs.join("ca.crt").display(),
                certs.join(format!("{cert}.crt")).display(),
                certs.join(format!("{cert}.key")).display()
            )
        },
    );
    let mut yaml = format!(
        "nodeName: {node_name}\ncgroupRoot: {}\npodCgroupPath: {}\nbpfPinPath: {}\nhostNetns: {}\n\
         httpListen: 127.0.0.1:0\ncollector:\n  endpoint: {}\n  tls: {tls}\n  spoolDir: {}\n",
        node.cgroup_root().display(),
        node.pod_cgroup_path().display(),
        spec.pins(node).display(),
        node.node_netns().path().display(),
        spec.endpoint,
        spec.dir(node).join("spool").display(),
    );
    if let Some(bytes) = spec.spool_max_bytes {
        let _ = writeln!(yaml, "  spoolMaxBytes: {bytes}");
    }
    if let Some(token) = &spec.enrollment_token {
        let _ = writeln!(yaml, "  enrollment:\n    tokenFile: {}", token.display());
    }
    yaml.push_str(&spec.extra_yaml);
    if spec.pods_file {
        let _ = writeln!(yaml, "pods:\n  file: {}", pods.display());
    }
    if let Some(imds) = &spec.imds {
        let _ = writeln!(yaml, "imds:\n  {}", imds.trim_end().replace('\n', "\n  "));
    }
    // Atomically, like a ConfigMap update, so the agent never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, yaml).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename {}: {e}", path.display()));
}
