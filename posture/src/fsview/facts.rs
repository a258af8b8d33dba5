//! Mode and owner of a file, judged on the file a symlink points to, together with the
//! directories on the way to it: a 0600 file in a world-writable directory is not protected,
//! because anyone can replace it (or a link leading to it).

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{FileProblem, FsRoot, Resolved};

/// Write bits for group and others.
const GROUP_OTHER_WRITE: u32 = 0o022;
/// The sticky bit: in such a directory only an entry's owner may remove or rename it.
const STICKY: u32 = 0o1000;

/// A directory that lets someone other than root replace what the kubelet reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeakDir {
    /// The directory, in the kubelet's view.
    pub path: PathBuf,
    /// Its permission bits.
    pub mode: u32,
    /// Its owner.
    pub uid: u32,
}

impl WeakDir {
    /// One line saying why the directory weakens the file.
    pub fn describe(&self) -> String {
        if self.uid == 0 {
            format!(
                "directory {} is writable by group/others ({:04o})",
                self.path.display(),
                self.mode
            )
        } else {
            format!(
                "directory {} is owned by uid {}",
                self.path.display(),
                self.uid
            )
        }
    }
}

/// What decides whether a file is protected.
#[derive(Debug, Clone)]
pub struct FileFacts {
    /// The resolution that led to the file.
    pub resolved: Resolved,
    /// Permission bits of the final file, special bits included (`stat -c %a`).
    pub mode: u32,
    /// Owner of the final file.
    pub uid: u32,
    /// Group of the final file.
    pub gid: u32,
    /// Directories on the way that others can write.
    pub weak_dirs: Vec<WeakDir>,
}

impl FileFacts {
    /// Whether the mode grants nothing beyond `max` (`644 or more restrictive`).
    pub fn mode_within(&self, max: u32) -> bool {
        self.mode & !max == 0
    }

    /// Whether owner and group are both root.
    pub fn owned_by_root(&self) -> bool {
        self.uid == 0 && self.gid == 0
    }

    /// The file, and the links that led to it: `/a/current.pem -> /a/2024.pem`.
    pub fn describe_path(&self) -> String {
        let mut out = self.resolved.requested.display().to_string();
        if !self.resolved.links.is_empty() {
            let _ = write!(out, " -> {}", self.resolved.path.display());
        }
        out
    }

    /// `0640 root:root` style.
    pub fn describe_mode(&self) -> String {
        format!("{:04o} {}:{}", self.mode, self.uid, self.gid)
    }
}

impl FsRoot {
    /// Resolves `path` and gathers its mode, owner and weak directories.
    pub fn facts(&self, path: &Path) -> Result<FileFacts, FileProblem> {
        let resolved = self.resolve(path)?;
        facts_of(resolved)
    }
}

/// Facts of an already resolved path.
pub(crate) fn facts_of(resolved: Resolved) -> Result<FileFacts, FileProblem> {
    let mut weak_dirs = Vec::new();
    for (node, reader) in &resolved.lookup_dirs {
        // Followed on purpose: the walk saw no symlink among these, except the root
        // itself, which live is the `/proc/<pid>/root` magic link.
        let meta = fs::metadata(reader).map_err(|e| FileProblem::from_io(node.clone(), &e))?;
        let mode = meta.mode() & 0o7777;
        let writable = mode & GROUP_OTHER_WRITE != 0 && mode & STICKY == 0;
        if writable || meta.uid() != 0 {
            weak_dirs.push(WeakDir {
                path: node.clone(),
                mode,
                uid: meta.uid(),
            });
        }
    }
    Ok(FileFacts {
        mode: resolved.metadata.mode() & 0o7777,
        uid: resolved.metadata.uid(),
        gid: resolved.metadata.gid(),
        weak_dirs,
        resolved,
    })
}
