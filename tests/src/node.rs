//! [`SimNode`]: a Kubernetes worker node built from namespaces and cgroups the test owns.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use tempfile::TempDir;

use crate::bpffs::BpfFs;
use crate::builder::SimNodeBuilder;
use crate::cgroup::{CgroupTree, cgroup2_mount, create_all};
use crate::imds::ImdsServer;
use crate::netns::{NetNs, unique_id};
use crate::network::{IMDS_ADDRS, prepare, wire_imds};
use crate::pods::Pods;
use crate::probe::{ProbeResult, probe_path, run_probe};
use crate::process::{ProcessGuard, command_in};
use crate::stale::{TEST_DIR_PREFIX, sweep_stale};

/// `kubepods.slice` below the test root, where kubelet's systemd driver puts all pods.
const PODS_CGROUP: &str = "kubepods.slice";
/// The cgroup of "node" processes such as kubelet, outside every pod.
const HOST_CGROUP: &str = "system.slice/kubelet.service";

/// A simulated Kubernetes worker node. Dropping it removes everything it made, even while
/// a failed test unwinds.
#[derive(Debug)]
pub struct SimNode {
    // Fields drop in declaration order, which is the cleanup order: unmount the bpffs (so
    // pinned programs detach), kill the processes and remove the cgroups, then the pod namespaces, then stop the IMDS server (its sockets
    // pin the imds namespace), then the node's namespaces.
    pub(crate) bpffs: BpfFs,
    pub(crate) cgroups: CgroupTree,
    pub(crate) pods: Mutex<Pods>,
    pub(crate) imds: ImdsServer,
    pub(crate) imds_ns: NetNs,
    pub(crate) node_ns: NetNs,
    pub(crate) scratch: TempDir,
    pub(crate) id: String,
}

impl SimNode {
    /// Starts building a node.
    pub fn builder() -> SimNodeBuilder {
        SimNodeBuilder::default()
    }

    /// Creates the namespaces, links, IMDS server and cgroups of a node without pods.
    pub(crate) fn create() -> Self {
        sweep_stale();
        let id = unique_id();
        // Locals drop in reverse order if a step panics, so declare them in the reverse of
        // the cleanup order (see the struct's fields).
        let scratch = tempfile::Builder::new()
            .prefix(&format!("{TEST_DIR_PREFIX}{id}-"))
            .tempdir()
            .expect("create the node's scratch directory");
        let node_ns = NetNs::new(&format!("{id}-node"));
        prepare(&node_ns, true);
        let imds_ns = NetNs::new(&format!("{id}-imds"));
        prepare(&imds_ns, false);
        wire_imds(&node_ns, &imds_ns);
        let imds = ImdsServer::start(&imds_ns, &IMDS_ADDRS);
        let cgroups = CgroupTree::create(cgroup2_mount().join(format!("{TEST_DIR_PREFIX}{id}")));
        create_all(&cgroups.dir().join(HOST_CGROUP));
        create_all(&cgroups.dir().join(PODS_CGROUP));
        let bpffs = BpfFs::mount(scratch.path().join("bpffs"));
        Self {
            bpffs,
            cgroups,
            pods: Mutex::default(),
            imds,
            imds_ns,
            node_ns,
            scratch,
            id,
        }
    }

    /// The node's unique id, `nw<pid>-<counter>`.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The prefix of every network namespace of this node, `nw<pid>-<counter>-`.
    #[must_use]
    pub fn netns_prefix(&self) -> String {
        format!("{}-", self.id)
    }

    /// The host's network namespace.
    #[must_use]
    pub fn node_netns(&self) -> &NetNs {
        &self.node_ns
    }

    /// The namespace that holds the metadata service.
    #[must_use]
    pub fn imds_netns(&self) -> &NetNs {
        &self.imds_ns
    }

    /// The metadata server, to count what reached it.
    #[must_use]
    pub fn imds(&self) -> &ImdsServer {
        &self.imds
    }

    /// The cgroup2 mount: the agent's `cgroupRoot`.
    #[must_use]
    pub fn cgroup_root(&self) -> &'static Path {
        cgroup2_mount()
    }

    /// The test's own cgroup tree (absolute), `<cgroup2>/nodeward-test-<id>`.
    #[must_use]
    pub fn test_cgroup(&self) -> &Path {
        self.cgroups.dir()
    }

    /// The pods' cgroup relative to the cgroup2 mount, `nodeward-test-<id>/kubepods.slice`:
    /// the agent's `podCgroupPath`.
    #[must_use]
    pub fn pod_cgroup_path(&self) -> PathBuf {
        self.test_cgroup()
            .strip_prefix(cgroup2_mount())
            .expect("test cgroup below mount")
            .join(PODS_CGROUP)
    }

    /// The cgroup of node processes outside the pods (absolute).
    #[must_use]
    pub fn host_cgroup_dir(&self) -> PathBuf {
        self.test_cgroup().join(HOST_CGROUP)
    }

    /// A private bpf filesystem for the agent's pins, unmounted first when the node goes.
    #[must_use]
    pub fn bpffs(&self) -> &Path {
        self.bpffs.dir()
    }

    /// A temporary directory removed with the node, for configs, pod files, spools.
    #[must_use]
    pub fn scratch_dir(&self) -> &Path {
        self.scratch.path()
    }

    /// A command that runs `program` as a node process outside the pods (like kubelet): in
    /// the node's network namespace and the `system.slice/kubelet.service` cgroup.
    #[must_use]
    pub fn host_command(&self, program: impl AsRef<OsStr>) -> Command {
        command_in(program, &self.node_ns.path(), &self.host_cgroup_dir())
    }

    /// A command that runs `program` in the node's network namespace and in `cgroup_dir`
    /// (absolute), such as a cgroup a test made below the pod cgroup.
    #[must_use]
    pub fn command_in(&self, program: impl AsRef<OsStr>, cgroup_dir: &Path) -> Command {
        command_in(program, &self.node_ns.path(), cgroup_dir)
    }

    /// Starts a long-running node process, killed when the guard drops.
    #[must_use]
    pub fn spawn_host(&self, program: &str, args: &[&str]) -> ProcessGuard {
        ProcessGuard::spawn(
            self.host_command(program).args(args),
            &format!("{program} on node {}", self.id),
        )
    }

    /// Runs `nodeward-probe <args>` as a node process and returns its verdict.
    #[must_use]
    pub fn host_probe(&self, args: &[&str]) -> ProbeResult {
        run_probe(self.host_command(probe_path()).args(args))
    }
}
