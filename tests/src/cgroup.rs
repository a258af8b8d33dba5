//! The cgroup2 hierarchy: finding its mount, and test cgroup trees that kill their
//! processes and remove themselves when dropped.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::{mountinfo, wait::poll_until};

/// How long cleanup waits for killed processes to leave their cgroups.
const EMPTY_DEADLINE: Duration = Duration::from_secs(10);

/// The cgroup2 mount point, read from `/proc/self/mountinfo`.
///
/// It is `/sys/fs/cgroup` on a unified-hierarchy host but `/sys/fs/cgroup/unified` on a
/// hybrid one, so it is never hard-coded. Panics if there is no cgroup2 mount.
#[must_use]
pub fn cgroup2_mount() -> &'static Path {
    static MOUNT: OnceLock<PathBuf> = OnceLock::new();
    MOUNT.get_or_init(|| {
        let info = mountinfo::read().unwrap_or_else(|e| panic!("read /proc/self/mountinfo: {e}"));
        mountinfo::first_of_type(&info, "cgroup2")
            .expect("no cgroup2 filesystem is mounted (see /proc/self/mountinfo)")
    })
}

/// The cgroup a process is in on the cgroup2 hierarchy, relative to the cgroup2 mount
/// (the `0::/...` line of `/proc/<pid>/cgroup`, without its leading `/`).
///
/// Panics if the process is gone or has no cgroup2 line.
#[must_use]
pub fn process_cgroup(pid: u32) -> PathBuf {
    let path = format!("/proc/{pid}/cgroup");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let line = text.lines().find_map(|line| line.strip_prefix("0::"));
    let line = line.unwrap_or_else(|| panic!("{path} has no cgroup2 (0::) line:\n{text}"));
    PathBuf::from(line.trim_start_matches('/'))
}

/// A cgroup directory tree made by the harness; dropping it kills every process in it and
/// removes it.
#[derive(Debug)]
pub struct CgroupTree {
    dir: PathBuf,
}

impl CgroupTree {
    /// Creates `dir` (an absolute path below the cgroup2 mount); panics if it exists, so a
    /// tree that is not ours is never adopted and later removed.
    #[must_use]
    pub fn create(dir: PathBuf) -> Self {
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir cgroup {}: {e}", dir.display()));
        Self { dir }
    }

    /// The tree's top directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        if let Err(e) = remove_tree(&self.dir) {
            eprintln!("testkit: cleaning up cgroup {}: {e}", self.dir.display());
        }
    }
}

/// Creates the cgroup directories of `dir` that do not exist yet.
pub(crate) fn create_all(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir cgroup {}: {e}", dir.display()));
}

/// Kills every process below `dir`, waits until the cgroups are empty, and removes them
/// bottom-up. Only for cgroups the harness created: nothing else should have processes there.
pub(crate) fn remove_tree(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    kill_all(dir)?;
    let populated = || {
        std::fs::read_to_string(dir.join("cgroup.events"))
            .is_ok_and(|events| events.lines().any(|l| l == "populated 1"))
    };
    if !poll_until(EMPTY_DEADLINE, || !populated()) {
        return Err(io::Error::other(format!(
            "still populated after {EMPTY_DEADLINE:?}"
        )));
    }
    remove_dirs(dir)
}

/// SIGKILLs every process below `dir`: `cgroup.kill` where the kernel has it (5.14+),
/// otherwise each PID listed in the `cgroup.procs` files.
fn kill_all(dir: &Path) -> io::Result<()> {
    let kill_file = dir.join("cgroup.kill");
    if kill_file.exists() {
        return std::fs::write(kill_file, "1");
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            kill_all(&entry.path())?;
        }
    }
    for pid in std::fs::read_to_string(dir.join("cgroup.procs"))?.lines() {
        if let Ok(pid) = pid.trim().parse() {
            // The process may have exited since the read; that is fine.
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        }
    }
    Ok(())
}

/// Removes `dir` and the cgroups below it, deepest first (cgroupfs refuses recursive removal).
fn remove_dirs(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_dirs(&entry.path())?;
        }
    }
    std::fs::remove_dir(dir)
}
