//! The node's filesystem as the kubelet sees it: a root we resolve inside, symlinks
//! followed by hand, reads capped, and the facts (mode, owner, parent directories) that
//! decide whether a file is protected.

mod facts;
mod problem;
mod read;
mod resolve;

use std::path::{Path, PathBuf};

pub use facts::{FileFacts, WeakDir};
pub use problem::FileProblem;
pub(crate) use read::text_of;
pub use read::{MAX_CERT_BYTES, MAX_CONFIG_BYTES};
pub use resolve::{Link, MAX_SYMLINK_HOPS, Resolved};

/// The kubelet's working directory, for relative paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cwd {
    /// A path in the kubelet's view: `/` offline (systemd's default working directory),
    /// or the directory read from `/proc/<pid>/cwd` once verified to be the same inode.
    Node(PathBuf),
    /// Only reachable through `/proc/<pid>/cwd` (its path in the kubelet's view could not
    /// be verified): relative paths are looked up below this reader path.
    Opaque(PathBuf),
}

/// How this process reaches the filesystem a process (the kubelet) sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsRoot {
    /// The process's `/`, seen from here: `/proc/<pid>/root` live, the host root offline.
    root: PathBuf,
    cwd: Cwd,
}

impl FsRoot {
    /// A node tree at `host_root`, for a command line given offline: relative paths are
    /// taken from `/`, the working directory systemd gives services.
    pub fn offline(host_root: &Path) -> Self {
        Self {
            root: host_root.to_path_buf(),
            cwd: Cwd::Node(PathBuf::from("/")),
        }
    }

    /// A live process's view: `root` is its `/proc/<pid>/root`.
    pub fn new(root: PathBuf, cwd: Cwd) -> Self {
        Self { root, cwd }
    }

    /// Where this process reads the process's `/`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The process's working directory.
    pub fn cwd(&self) -> &Cwd {
        &self.cwd
    }

    /// The path `path` would have if resolved from `base` (a directory in the kubelet's
    /// view): how the kubelet treats relative paths inside a config file.
    pub fn relative_to(base: Option<&Path>, path: &Path) -> PathBuf {
        match base {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_path_buf(),
        }
    }
}
