//! What a scan read, so the agent can watch it (inotify) and rescan when it changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::fsview::{FsRoot, Resolved};

/// Whether a dependency is a file or a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DependencyKind {
    /// A file whose content or mode was judged: watch it for writes and attribute changes.
    File,
    /// A directory holding something judged (or something missing): watch it for entries
    /// created, removed, renamed, and a symlink being swapped.
    Directory,
}

/// One thing to watch.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    /// The path where this process can watch it (under `/proc/<pid>/root` or the host root).
    pub watch: PathBuf,
    /// The path in the kubelet's view, for people.
    pub path: PathBuf,
    /// File or directory.
    pub kind: DependencyKind,
}

/// Collects dependencies while a scan runs.
#[derive(Debug, Default)]
pub(crate) struct Deps(BTreeMap<PathBuf, Dependency>);

impl Deps {
    fn add(&mut self, fs: &FsRoot, path: &Path, kind: DependencyKind) {
        let watch = reader_of(fs, path);
        self.0.entry(watch.clone()).or_insert(Dependency {
            watch,
            path: path.to_path_buf(),
            kind,
        });
    }

    /// A resolved file or directory, the directory holding it, and every directory holding a
    /// symlink on the way (a rotated certificate swaps a symlink there).
    pub fn resolved(&mut self, fs: &FsRoot, resolved: &Resolved) {
        let kind = if resolved.metadata.is_dir() {
            DependencyKind::Directory
        } else {
            DependencyKind::File
        };
        self.add(fs, &resolved.path, kind);
        let parents = std::iter::once(&resolved.path)
            .chain(resolved.links.iter().map(|l| &l.path))
            .filter_map(|p| p.parent());
        for parent in parents {
            self.add(fs, parent, DependencyKind::Directory);
        }
    }

    /// A path that could not be resolved: watch the directory it would appear in.
    pub fn attempted(&mut self, fs: &FsRoot, requested: &Path) {
        let absolute = match fs.cwd() {
            crate::fsview::Cwd::Node(cwd) => cwd.join(requested),
            crate::fsview::Cwd::Opaque(_) if requested.is_absolute() => requested.to_path_buf(),
            crate::fsview::Cwd::Opaque(_) => return,
        };
        if let Some(parent) = absolute.parent() {
            self.add(fs, parent, DependencyKind::Directory);
        }
    }

    pub fn into_vec(self) -> Vec<Dependency> {
        self.0.into_values().collect()
    }
}

/// The reader path of an absolute path in the process's view.
fn reader_of(fs: &FsRoot, path: &Path) -> PathBuf {
    match path.strip_prefix("/") {
        Ok(inside) => fs.root().join(inside),
        Err(_) => path.to_path_buf(),
    }
}
