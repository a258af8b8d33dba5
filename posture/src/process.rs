//! Finding a process (the kubelet, kube-proxy) and what it sees: its command line from
//! `/proc/<pid>/cmdline`, its root and working directory through `/proc/<pid>/root` and
//! `/proc/<pid>/cwd`, its systemd unit from `/proc/<pid>/cgroup`.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::shell;
use crate::error::ScanError;
use crate::fsview::{Cwd, FsRoot};

/// A process as the scanner sees it, live or described offline.
#[derive(Debug, Clone)]
pub struct ProcessInfo {
    /// Its pid; none offline.
    pub pid: Option<u32>,
    /// Its executable, as `/proc/<pid>/exe` names it.
    pub exe: Option<PathBuf>,
    /// Its command line, program first.
    pub args: Vec<String>,
    /// When it started, in clock ticks after boot (`/proc/<pid>/stat` field 22): with the
    /// pid, this tells a restarted process from the same one.
    pub start_time: Option<u64>,
    /// Its systemd unit, when its cgroup names one (`kubelet.service`).
    pub unit: Option<String>,
    /// Its filesystem.
    pub fs: FsRoot,
}

/// Where processes are listed: the host's `/proc` mounted under the host root when there is
/// one (an agent in a container with the host's `/` at `/host`), else our own `/proc`.
pub fn proc_dir(host_root: &Path) -> PathBuf {
    let under_root = host_root.join("proc");
    if host_root != Path::new("/") && under_root.is_dir() {
        under_root
    } else {
        PathBuf::from("/proc")
    }
}

/// Pids whose executable is named `name` (or, when the executable cannot be read, whose
/// `comm` is), ascending. Kernel threads, which have no command line, are skipped.
pub fn find(proc_dir: &Path, name: &str) -> Result<Vec<u32>, ScanError> {
    let entries = fs::read_dir(proc_dir).map_err(|source| ScanError::ProcUnreadable {
        proc_dir: proc_dir.to_path_buf(),
        source,
    })?;
    let mut pids: Vec<u32> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| is_named(&proc_dir.join(pid.to_string()), name))
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

fn is_named(dir: &Path, name: &str) -> bool {
    if fs::metadata(dir.join("cmdline")).is_err()
        || fs::read(dir.join("cmdline")).is_ok_and(|c| c.is_empty())
    {
        return false;
    }
    match fs::read_link(dir.join("exe")) {
        Ok(exe) => exe
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n == name || n.strip_suffix(" (deleted)") == Some(name)),
        Err(_) => fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim_end() == name),
    }
}

/// Reads a live process.
pub fn open(proc_dir: &Path, pid: u32) -> Result<ProcessInfo, ScanError> {
    let dir = proc_dir.join(pid.to_string());
    if !dir.is_dir() {
        return Err(ScanError::NoSuchProcess {
            pid,
            proc_dir: proc_dir.to_path_buf(),
        });
    }
    let raw = fs::read(dir.join("cmdline")).map_err(|source| ScanError::ProcessUnreadable {
        pid,
        proc_dir: proc_dir.to_path_buf(),
        source,
    })?;
    Ok(ProcessInfo {
        pid: Some(pid),
        exe: fs::read_link(dir.join("exe")).ok(),
        args: split_cmdline(&raw),
        start_time: start_time(&dir),
        unit: unit(&dir),
        fs: FsRoot::new(dir.join("root"), cwd(&dir)),
    })
}

/// A process described by its command line, its files under `host_root`.
pub fn offline(host_root: &Path, line: &str, program: &str) -> Result<ProcessInfo, ScanError> {
    let mut args = shell::split(line).map_err(ScanError::BadKubeletArgs)?;
    // Accept both "kubelet --flag ..." and just "--flag ...".
    if args.first().is_none_or(|a| a.starts_with('-')) {
        args.insert(0, program.to_owned());
    }
    Ok(ProcessInfo {
        pid: None,
        exe: None,
        args,
        start_time: None,
        unit: None,
        fs: FsRoot::offline(host_root),
    })
}

/// NUL-separated, with a NUL after the last argument; empty arguments (`--node-labels ""`)
/// are kept.
fn split_cmdline(raw: &[u8]) -> Vec<String> {
    let trimmed = raw.strip_suffix(&[0]).unwrap_or(raw);
    if trimmed.is_empty() {
        return Vec::new();
    }
    trimmed
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

fn start_time(dir: &Path) -> Option<u64> {
    let stat = fs::read_to_string(dir.join("stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

fn unit(dir: &Path) -> Option<String> {
    let cgroup = fs::read_to_string(dir.join("cgroup")).ok()?;
    cgroup
        .lines()
        .filter(|l| l.starts_with("0::") || l.contains(":name=systemd:"))
        .find_map(|l| {
            let last = l.rsplit('/').next()?;
            last.ends_with(".service").then(|| last.to_owned())
        })
}

/// The working directory in the process's own view, when it can be verified to be the
/// directory `/proc/<pid>/cwd` leads to; otherwise only that link is trusted.
fn cwd(dir: &Path) -> Cwd {
    let opaque = Cwd::Opaque(dir.join("cwd"));
    let (Ok(cwd), Ok(root)) = (
        fs::read_link(dir.join("cwd")),
        fs::read_link(dir.join("root")),
    ) else {
        return opaque;
    };
    let Ok(inside) = cwd.strip_prefix(&root) else {
        return opaque;
    };
    let candidate = Path::new("/").join(inside);
    let same = match (
        fs::metadata(dir.join("root").join(inside)),
        fs::metadata(dir.join("cwd")),
    ) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    if same { Cwd::Node(candidate) } else { opaque }
}
