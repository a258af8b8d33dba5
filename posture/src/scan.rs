//! One posture scan: find the kubelet, build its effective configuration, run every check,
//! and collect what the verdicts depend on.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use crate::checks::{self, CheckResult, Context, ProxyView};
use crate::config::{Defaults, Flags, layers};
use crate::deps::Deps;
use crate::error::ScanError;
use crate::process::{self, ProcessInfo};

/// How to find the kubelet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KubeletSource {
    /// The one process whose executable is named `kubelet`.
    #[default]
    Discover,
    /// This process (`--kubelet-pid`).
    Pid(i32),
    /// Offline: this command line (`--kubelet-args`), its files under the host root.
    Args(String),
}

/// What to scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanOptions {
    /// The node's `/` as seen from here (an agent container mounts it at e.g. `/host`);
    /// `None` is our own `/`. Live, processes are listed in its `proc` when it has one.
    pub host_root: Option<PathBuf>,
    /// How to find the kubelet.
    pub kubelet: KubeletSource,
}

/// The result of a scan.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PostureReport {
    /// The node's name.
    pub node: String,
    /// Every check's verdict, in catalogue order.
    pub checks: Vec<CheckResult>,
    /// Every file and directory the verdicts depend on, as paths this process can watch
    /// (inotify): a change to any of them calls for a rescan.
    pub dependencies: Vec<PathBuf>,
    /// The kubelet's pid; `None` offline.
    pub kubelet_pid: Option<i32>,
    /// The kubelet's command line, program first.
    pub kubelet_cmdline: Vec<String>,
    /// When the kubelet started (clock ticks after boot): with the pid, tells a restart.
    pub kubelet_start_time: Option<u64>,
    /// Which defaults fill what flags and files leave unset.
    pub kubelet_defaults: Defaults,
}

impl PostureReport {
    /// Whether any check failed or could not be judged.
    pub fn has_failures(&self) -> bool {
        self.checks
            .iter()
            .any(|c| matches!(c.status, checks::Status::Fail | checks::Status::Error))
    }
}

/// Scans the node now.
pub fn scan(options: &ScanOptions) -> Result<PostureReport, ScanError> {
    scan_at(options, SystemTime::now())
}

/// Scans the node as of `now` (certificate expiry is judged against it).
pub fn scan_at(options: &ScanOptions, now: SystemTime) -> Result<PostureReport, ScanError> {
    let root = options
        .host_root
        .clone()
        .unwrap_or_else(|| PathBuf::from("/"));
    let proc_dir = process::proc_dir(&root);
    let (kubelet, live) = match &options.kubelet {
        KubeletSource::Discover => (discover(&proc_dir)?, true),
        KubeletSource::Pid(pid) => {
            let pid = u32::try_from(*pid).map_err(|_| ScanError::BadPid(*pid))?;
            (process::open(&proc_dir, pid)?, true)
        }
        KubeletSource::Args(line) => {
            std::fs::read_dir(&root).map_err(|source| ScanError::BadHostRoot {
                path: root.clone(),
                source,
            })?;
            (process::offline(&root, line, "kubelet")?, false)
        }
    };
    let proxy = if live {
        find_proxy(&proc_dir)
    } else {
        ProxyView::NotLooked
    };
    let mut deps = Deps::default();
    let flags = Flags::parse(&kubelet.args);
    let config = layers::load(flags, &kubelet.fs, &mut deps);
    let ctx = Context::new(&kubelet, &config, &proxy, now, deps);
    let results = checks::run_all(&ctx);
    let dependencies = ctx
        .into_deps()
        .into_vec()
        .into_iter()
        .map(|d| d.watch)
        .collect();
    Ok(PostureReport {
        node: node_name(&kubelet, &config.flags),
        checks: results,
        dependencies,
        kubelet_pid: kubelet.pid.and_then(|p| i32::try_from(p).ok()),
        kubelet_cmdline: kubelet.args.clone(),
        kubelet_start_time: kubelet.start_time,
        kubelet_defaults: config.defaults,
    })
}

fn discover(proc_dir: &Path) -> Result<ProcessInfo, ScanError> {
    match process::find(proc_dir, "kubelet")?.as_slice() {
        [] => Err(ScanError::NoKubelet {
            proc_dir: proc_dir.to_path_buf(),
        }),
        [pid] => process::open(proc_dir, *pid),
        pids => Err(ScanError::AmbiguousKubelet {
            proc_dir: proc_dir.to_path_buf(),
            pids: pids.to_vec(),
        }),
    }
}

/// kube-proxy runs as a DaemonSet pod on most clusters: visible in the host's `/proc`.
fn find_proxy(proc_dir: &Path) -> ProxyView {
    match process::find(proc_dir, "kube-proxy") {
        Ok(pids) => match pids.first() {
            Some(pid) => match process::open(proc_dir, *pid) {
                Ok(info) => ProxyView::Found(info),
                Err(e) => ProxyView::NotFound(e.to_string()),
            },
            None => ProxyView::NotFound(format!(
                "no kube-proxy process in {} (none on this node, or another proxy such as Cilium replaces it)",
                proc_dir.display()
            )),
        },
        Err(e) => ProxyView::NotFound(e.to_string()),
    }
}

/// The name the node registers under, as well as it can be told from here.
fn node_name(kubelet: &ProcessInfo, flags: &Flags) -> String {
    // The agent's DaemonSet passes spec.nodeName: the authoritative name.
    if let Ok(name) = std::env::var("NODE_NAME")
        && !name.trim().is_empty()
    {
        return name.trim().to_owned();
    }
    if let Some(name) = flags.last("hostname-override").filter(|n| !n.is_empty()) {
        return name.to_lowercase();
    }
    let from_file = |p: PathBuf| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty() && s.len() < 256)
    };
    // Offline, the kernel's hostname is this machine's, not the scanned node's.
    let kernel = kubelet
        .pid
        .map(|_| PathBuf::from("/proc/sys/kernel/hostname"));
    from_file(kubelet.fs.root().join("etc/hostname"))
        .or_else(|| kernel.and_then(from_file))
        .unwrap_or_else(|| "unknown".to_owned())
}
