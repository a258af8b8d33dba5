//! Fixture node trees with real modes and owners, certificates, layouts of real
//! distributions, and fake kubelet processes. Tests panic with a message on setup failure.

#![allow(dead_code, reason = "each test binary uses part of the support module")]

pub mod certs;
pub mod layouts;
pub mod process;

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nodeward_posture::{CheckResult, KubeletSource, PostureReport, ScanOptions, Status, scan_at};
use serde_json::Value;

/// The clock every fixture is judged at: 2030-06-01T00:00:00Z. Certificates are made
/// around it, so expiry verdicts do not depend on when the tests run.
pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_hours(529_608)
}

/// A node's `/` in a temporary directory.
pub struct Node {
    dir: tempfile::TempDir,
}

impl Default for Node {
    fn default() -> Self {
        Self::new()
    }
}

impl Node {
    /// An empty tree, its root 0755 root:root like a real `/`.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("nodeward-node-")
            .tempdir()
            .expect("create a temporary node root");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod root");
        Self { dir }
    }

    /// The tree's root on this machine.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Where a node path lives on this machine.
    pub fn path(&self, node_path: &str) -> PathBuf {
        self.root().join(node_path.trim_start_matches('/'))
    }

    /// A directory (and its parents, 0755) with `mode`.
    pub fn dir(&self, node_path: &str, mode: u32) -> &Self {
        self.parents(node_path);
        let path = self.path(node_path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod dir");
        self
    }

    fn parents(&self, node_path: &str) {
        let mut current = self.root().to_path_buf();
        let Some(parent) = Path::new(node_path.trim_start_matches('/')).parent() else {
            return;
        };
        for part in parent.components() {
            current.push(part);
            if fs::symlink_metadata(&current).is_err() {
                fs::create_dir(&current)
                    .unwrap_or_else(|e| panic!("mkdir {}: {e}", current.display()));
                fs::set_permissions(&current, fs::Permissions::from_mode(0o755)).expect("chmod");
            }
        }
    }

    /// A file with `content` and `mode`, replacing what was there.
    pub fn file(&self, node_path: &str, mode: u32, content: impl AsRef<[u8]>) -> &Self {
        self.parents(node_path);
        let path = self.path(node_path);
        let _ = fs::remove_file(&path);
        fs::write(&path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod file");
        self
    }

    /// A JSON document as a file.
    pub fn json(&self, node_path: &str, mode: u32, doc: &Value) -> &Self {
        self.file(
            node_path,
            mode,
            serde_json::to_string_pretty(doc).expect("json"),
        )
    }

    /// A symlink at `node_path` pointing to `target`, written as given (absolute targets
    /// are node paths: the scanner must re-root them).
    pub fn symlink(&self, node_path: &str, target: &str) -> &Self {
        self.parents(node_path);
        let path = self.path(node_path);
        let _ = fs::remove_file(&path);
        symlink(target, &path).unwrap_or_else(|e| panic!("symlink {}: {e}", path.display()));
        self
    }

    /// Changes the mode of a node path.
    pub fn chmod(&self, node_path: &str, mode: u32) -> &Self {
        fs::set_permissions(self.path(node_path), fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {node_path}: {e}"));
        self
    }

    /// Changes the owner of a node path (tests run as root, as CI does).
    pub fn chown(&self, node_path: &str, uid: u32, gid: u32) -> &Self {
        chown(self.path(node_path), Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {node_path}: {e}"));
        self
    }

    /// Removes a file.
    pub fn remove(&self, node_path: &str) -> &Self {
        fs::remove_file(self.path(node_path)).unwrap_or_else(|e| panic!("rm {node_path}: {e}"));
        self
    }

    /// Scans the tree offline with the kubelet command line `args`.
    pub fn scan(&self, args: &str) -> Report {
        let options = ScanOptions {
            host_root: Some(self.root().to_path_buf()),
            kubelet: KubeletSource::Args(args.to_owned()),
        };
        Report(scan_at(&options, now()).unwrap_or_else(|e| panic!("scan failed: {e}")))
    }
}

/// Whether the tests can give files away (chown needs root).
pub fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

/// A scan's report with lookups by check id.
pub struct Report(pub PostureReport);

impl Report {
    /// The check with `id`.
    pub fn check(&self, id: &str) -> &CheckResult {
        self.0
            .checks
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("no check {id} in the report"))
    }

    /// Its status.
    pub fn status(&self, id: &str) -> Status {
        self.check(id).status
    }

    /// Panics, showing the check, unless it has `want`.
    pub fn expect(&self, id: &str, want: Status) -> &Self {
        let check = self.check(id);
        assert_eq!(
            check.status, want,
            "{id}: expected {want:?}, got {:?}\n  observed: {}\n  source: {}",
            check.status, check.observed, check.source
        );
        self
    }

    /// Every check not passing, one line each, for assertion messages.
    pub fn not_passing(&self) -> String {
        self.0
            .checks
            .iter()
            .filter(|c| c.status != Status::Pass)
            .map(|c| format!("{} {:?}: {} [{}]", c.id, c.status, c.observed, c.source))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Merges `patch` into `base` (JSON merge patch: null deletes).
pub fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else {
                    merge(b.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}
