//! Pods of a simulated node: what a test asks for ([`PodSpec`]) and what it gets back
//! ([`SimPod`]): ids, cgroup paths, network namespace and addresses, and commands run inside.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cgroup::cgroup2_mount;
use crate::probe::{ProbeResult, probe_path, run_probe};
use crate::process::{ProcessGuard, command_in};

/// A pod's Kubernetes quality of service class, which decides where kubelet puts its cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Qos {
    /// `kubepods.slice/kubepods-pod<uid>.slice`.
    Guaranteed,
    /// `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice`.
    Burstable,
    /// `kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid>.slice`.
    #[default]
    BestEffort,
}

/// What a test wants of a pod; [`SimNode::add_pod`](crate::SimNode::add_pod) makes it.
#[derive(Debug, Clone)]
pub struct PodSpec {
    pub(crate) name: String,
    pub(crate) namespace: String,
    pub(crate) service_account: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) host_network: bool,
    pub(crate) qos: Qos,
    pub(crate) uid: Option<String>,
    pub(crate) container_id: Option<String>,
}

impl PodSpec {
    /// A best-effort pod `name` in namespace `default` with service account `default`, its
    /// own network namespace, a random UID and a random container id.
    #[must_use]
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            namespace: "default".to_owned(),
            service_account: "default".to_owned(),
            labels: BTreeMap::new(),
            host_network: false,
            qos: Qos::default(),
            uid: None,
            container_id: None,
        }
    }

    /// Sets the Kubernetes namespace.
    #[must_use]
    pub fn namespace(mut self, namespace: &str) -> Self {
        namespace.clone_into(&mut self.namespace);
        self
    }

    /// Sets the service account.
    #[must_use]
    pub fn service_account(mut self, service_account: &str) -> Self {
        service_account.clone_into(&mut self.service_account);
        self
    }

    /// Adds a label.
    #[must_use]
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// `hostNetwork: true`: the pod's processes share the node's network namespace but still
    /// live in the pod's cgroup.
    #[must_use]
    pub fn host_network(mut self, host_network: bool) -> Self {
        self.host_network = host_network;
        self
    }

    /// Sets the quality of service class (default best-effort).
    #[must_use]
    pub fn qos(mut self, qos: Qos) -> Self {
        self.qos = qos;
        self
    }

    /// Uses this pod UID instead of a random one.
    #[must_use]
    pub fn uid(mut self, uid: &str) -> Self {
        self.uid = Some(uid.to_owned());
        self
    }

    /// Uses this container id (64 hex digits) instead of a random one.
    #[must_use]
    pub fn container_id(mut self, container_id: &str) -> Self {
        self.container_id = Some(container_id.to_owned());
        self
    }
}

/// A pod of a [`SimNode`](crate::SimNode): a plain handle, free to clone. The node owns the
/// pod's namespace and cgroups and removes them when it is dropped.
#[derive(Debug, Clone)]
pub struct SimPod {
    pub(crate) spec: PodSpec,
    pub(crate) uid: String,
    pub(crate) container_id: String,
    pub(crate) netns_name: String,
    pub(crate) pod_cgroup: PathBuf,
    pub(crate) container_cgroup: PathBuf,
    pub(crate) addrs: Option<(Ipv4Addr, Ipv6Addr)>,
}

impl SimPod {
    /// The pod name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.spec.name
    }
    /// The Kubernetes namespace.
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.spec.namespace
    }
    /// The service account.
    #[must_use]
    pub fn service_account(&self) -> &str {
        &self.spec.service_account
    }
    /// The labels.
    #[must_use]
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.spec.labels
    }
    /// Whether the pod uses the node's network.
    #[must_use]
    pub fn is_host_network(&self) -> bool {
        self.spec.host_network
    }
    /// The pod UID (a UUID, with dashes).
    #[must_use]
    pub fn uid(&self) -> &str {
        &self.uid
    }
    /// The container id (64 hex digits).
    #[must_use]
    pub fn container_id(&self) -> &str {
        &self.container_id
    }
    /// The pod's cgroup relative to the cgroup2 mount, e.g.
    /// `nodeward-test-…/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid>.slice`.
    #[must_use]
    pub fn pod_cgroup_path(&self) -> &Path {
        &self.pod_cgroup
    }
    /// The container's cgroup relative to the cgroup2 mount (the pod cgroup plus
    /// `cri-containerd-<id>.scope`), as `/proc/<pid>/cgroup` shows it without the leading `/`.
    #[must_use]
    pub fn cgroup_path(&self) -> &Path {
        &self.container_cgroup
    }
    /// The container's cgroup directory (absolute).
    #[must_use]
    pub fn cgroup_dir(&self) -> PathBuf {
        cgroup2_mount().join(&self.container_cgroup)
    }
    /// The network namespace the pod's processes run in (the node's if hostNetwork).
    #[must_use]
    pub fn netns_name(&self) -> &str {
        &self.netns_name
    }
    /// That namespace's file, `/run/netns/<name>`.
    #[must_use]
    pub fn netns_path(&self) -> PathBuf {
        Path::new(crate::netns::NETNS_RUN_DIR).join(&self.netns_name)
    }
    /// The pod's IPv4 address (`10.200.<n>.2`); `None` for a hostNetwork pod.
    #[must_use]
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        self.addrs.map(|(v4, _)| v4)
    }
    /// The pod's IPv6 address (`fd00:200:<n>::2`); `None` for a hostNetwork pod.
    #[must_use]
    pub fn ipv6(&self) -> Option<Ipv6Addr> {
        self.addrs.map(|(_, v6)| v6)
    }

    /// A command that runs `program` as a process of this pod's container: in its cgroup and
    /// its network namespace. Panics once the node is gone.
    #[must_use]
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        command_in(program, &self.netns_path(), &self.cgroup_dir())
    }

    /// Starts a long-running process in the pod (e.g. `("sleep", &["infinity"])`), killed
    /// when the guard drops.
    #[must_use]
    pub fn spawn(&self, program: &str, args: &[&str]) -> ProcessGuard {
        ProcessGuard::spawn(
            self.command(program).args(args),
            &format!("{program} in pod {}", self.name()),
        )
    }

    /// Runs `nodeward-probe <args>` in the pod and returns its verdict.
    #[must_use]
    pub fn probe(&self, args: &[&str]) -> ProbeResult {
        run_probe(self.command(probe_path()).args(args))
    }
}

/// The pod cgroup, relative to `kubepods.slice`, that kubelet's systemd driver gives `uid`.
impl SimPod {
    /// Starts another container in this pod, as kubelet does for a sidecar or a restart:
    /// a new container cgroup below the pod's, in the same network. The result is a handle
    /// on that container (same pod, different container id and cgroup).
    #[must_use]
    pub fn add_container(&self) -> SimPod {
        let container_id = random_container_id();
        let container_cgroup = self.pod_cgroup.join(container_scope(&container_id));
        crate::cgroup::create_all(&cgroup2_mount().join(&container_cgroup));
        SimPod {
            container_id,
            container_cgroup,
            ..self.clone()
        }
    }
}

pub(crate) fn pod_slice(qos: Qos, uid: &str) -> PathBuf {
    // systemd unit names cannot contain '-' inside a component, so kubelet writes '_'.
    let uid = uid.replace('-', "_");
    match qos {
        Qos::Guaranteed => PathBuf::from(format!("kubepods-pod{uid}.slice")),
        Qos::Burstable => PathBuf::from(format!(
            "kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice"
        )),
        Qos::BestEffort => PathBuf::from(format!(
            "kubepods-besteffort.slice/kubepods-besteffort-pod{uid}.slice"
        )),
    }
}

/// The scope containerd (via systemd) gives a container.
pub(crate) fn container_scope(container_id: &str) -> String {
    format!("cri-containerd-{container_id}.scope")
}

/// A random 64-hex-digit container id, like containerd's.
pub(crate) fn random_container_id() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}
