//! Sweeping up after test processes that died without unwinding (SIGKILL, a timeout, an
//! abort): their namespaces, cgroups and scratch directories would otherwise stay forever.

use std::path::Path;

use crate::bpffs::{mounts_below, unmount};
use crate::cgroup::{cgroup2_mount, remove_tree};
use crate::netns::{NetNs, try_ip};

/// Prefix of the test cgroup trees and scratch directories, followed by a node id.
pub(crate) const TEST_DIR_PREFIX: &str = "nodeward-test-";

/// Removes the namespaces, cgroup trees and scratch directories that this harness made in
/// processes that no longer exist, and returns what it removed.
///
/// Only names of the harness's own scheme (`nw<pid>-...`, `nodeward-test-nw<pid>-...`) are
/// touched, and only when no process `<pid>` is alive, so tests running right now in other
/// processes keep theirs. A live process that merely reuses a dead run's pid keeps that
/// run's leftovers alive a little longer; the next sweep gets them.
#[expect(clippy::must_use_candidate, reason = "what was removed is also logged")]
pub fn sweep_stale() -> Vec<String> {
    let mut removed = Vec::new();
    for name in NetNs::list() {
        if is_stale(&name) {
            // A sweep that fails must not fail the test that ran it.
            match try_ip(&["netns", "del", &name]) {
                Ok(_) => removed.push(format!("netns {name}")),
                Err(e) => eprintln!("testkit: removing stale netns: {e}"),
            }
        }
    }
    for dir in stale_dirs(cgroup2_mount()) {
        match remove_tree(&dir) {
            Ok(()) => removed.push(format!("cgroup {}", dir.display())),
            Err(e) => eprintln!("testkit: removing stale cgroup {}: {e}", dir.display()),
        }
    }
    for dir in stale_dirs(&std::env::temp_dir()) {
        // A dead run's bpffs is still mounted inside its scratch directory.
        for mount in mounts_below(&dir) {
            unmount(&mount);
        }
        if std::fs::remove_dir_all(&dir).is_ok() {
            removed.push(format!("directory {}", dir.display()));
        }
    }
    if !removed.is_empty() {
        eprintln!("testkit: removed leftovers of dead test processes: {removed:?}");
    }
    removed
}

/// Directories in `parent` named `nodeward-test-<id>...` whose id is stale.
fn stale_dirs(parent: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.strip_prefix(TEST_DIR_PREFIX).is_some_and(is_stale)
        })
        .map(|entry| entry.path())
        .collect()
}

/// Whether `name` starts with a node id (`nw<pid>-`) of a process that is gone.
fn is_stale(name: &str) -> bool {
    owner_pid(name).is_some_and(|pid| {
        pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists()
    })
}

/// The pid in a name that starts `nw<pid>-`.
fn owner_pid(name: &str) -> Option<u32> {
    let (pid, _) = name.strip_prefix("nw")?.split_once('-')?;
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_owner_pids() {
        assert_eq!(owner_pid("nw1234-7-node"), Some(1234));
        assert_eq!(owner_pid("nw1234-7-pod3"), Some(1234));
        assert_eq!(owner_pid("nwx-7-node"), None);
        assert_eq!(owner_pid("cni-1234"), None);
        assert!(!is_stale(&format!("nw{}-1-node", std::process::id())));
        assert!(!is_stale("nw1-1-node"), "pid 1 is always alive");
    }
}
