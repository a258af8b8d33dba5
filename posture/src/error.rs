//! Why a scan could not run at all. A file the kubelet names being missing or garbage is not
//! one of these: it is an `error` status on the checks that depend on it.

use std::io;
use std::path::PathBuf;

/// The scan itself could not run.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// No process whose executable is named `kubelet`.
    #[error(
        "no kubelet process found on this node; pass --kubelet-pid or --kubelet-args with \
         --host-root (searched {} for a process whose executable is named `kubelet`)",
        proc_dir.display()
    )]
    NoKubelet {
        /// The proc directory that was searched.
        proc_dir: PathBuf,
    },
    /// More than one kubelet, and nothing says which one to judge.
    #[error(
        "{} kubelet processes found in {} (pids {}): choose one with --kubelet-pid PID",
        pids.len(), proc_dir.display(), join(pids)
    )]
    AmbiguousKubelet {
        /// The proc directory that was searched.
        proc_dir: PathBuf,
        /// Every candidate.
        pids: Vec<u32>,
    },
    /// `--kubelet-pid` names no process.
    #[error("no process {pid} in {}: is the kubelet running, and is its pid visible here (hostPID)?", proc_dir.display())]
    NoSuchProcess {
        /// The pid asked for.
        pid: u32,
        /// The proc directory looked in.
        proc_dir: PathBuf,
    },
    /// The process exists but its command line cannot be read.
    #[error("cannot read the command line of process {pid} in {}: {source}", proc_dir.display())]
    ProcessUnreadable {
        /// The pid.
        pid: u32,
        /// The proc directory.
        proc_dir: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The proc directory itself cannot be listed.
    #[error("cannot list processes in {}: {source}", proc_dir.display())]
    ProcUnreadable {
        /// The proc directory.
        proc_dir: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// `--kubelet-pid` is not a pid.
    #[error("--kubelet-pid {0}: not a process id")]
    BadPid(i32),
    /// `--kubelet-args` cannot be split into words.
    #[error("--kubelet-args: {0}")]
    BadKubeletArgs(String),
    /// `--host-root` is not a directory.
    #[error("host root {} is not a directory we can read: {source}", path.display())]
    BadHostRoot {
        /// The host root.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

fn join(pids: &[u32]) -> String {
    pids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
