//! Reading files the kubelet names: capped, text only, and the very file that was judged.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::{FileProblem, FsRoot, Resolved};

/// The largest kubelet or kube-proxy config, drop-in, kubeconfig or unit file we read. Real
/// ones are a few KiB; anything near this is not a config.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// The largest certificate, CA bundle or key file we read.
pub const MAX_CERT_BYTES: u64 = 4 * 1024 * 1024;

impl FsRoot {
    /// Resolves `path` and reads it as UTF-8 text of at most `limit` bytes.
    pub fn read_text(&self, path: &Path, limit: u64) -> Result<(Resolved, String), FileProblem> {
        let resolved = self.resolve(path)?;
        let text = read_resolved(&resolved, limit)?;
        Ok((resolved, text))
    }

    /// Resolves a directory and lists its entries, sorted by name as Go's `filepath.WalkDir`
    /// (and so the kubelet) orders them.
    pub fn list_dir(&self, path: &Path) -> Result<(Resolved, Vec<String>), FileProblem> {
        let resolved = self.resolve(path)?;
        if !resolved.metadata.is_dir() {
            return Err(FileProblem::NotADirectory {
                path: resolved.path.clone(),
            });
        }
        let entries = fs::read_dir(&resolved.reader)
            .map_err(|e| FileProblem::from_io(resolved.path.clone(), &e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| FileProblem::from_io(resolved.path.clone(), &e))?;
            // A name that is not UTF-8 cannot be a `.conf` drop-in or a PEM file we look for.
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort_unstable();
        Ok((resolved, names))
    }
}

/// Reads an already resolved regular file.
pub(crate) fn read_resolved(resolved: &Resolved, limit: u64) -> Result<String, FileProblem> {
    let path = || resolved.path.clone();
    if !resolved.metadata.is_file() {
        return Err(FileProblem::NotAFile {
            path: path(),
            kind: kind_name(&resolved.metadata),
        });
    }
    // O_NOFOLLOW: the final component was lstat'ed as a regular file; if it has been
    // swapped for a symlink since, refuse rather than follow it.
    let mut file: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&resolved.reader)
        .map_err(|e| FileProblem::from_io(path(), &e))?;
    let opened = file
        .metadata()
        .map_err(|e| FileProblem::from_io(path(), &e))?;
    if opened.dev() != resolved.metadata.dev() || opened.ino() != resolved.metadata.ino() {
        return Err(FileProblem::Unreadable {
            path: path(),
            reason: "replaced while being read".to_owned(),
        });
    }
    if opened.len() > limit {
        return Err(FileProblem::Oversized {
            path: path(),
            size: opened.len(),
            limit,
        });
    }
    let mut bytes = Vec::new();
    // One byte past the limit tells a file that grew after fstat from one that fits.
    file.by_ref()
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| FileProblem::from_io(path(), &e))?;
    if bytes.len() as u64 > limit {
        return Err(FileProblem::Oversized {
            path: path(),
            size: bytes.len() as u64,
            limit,
        });
    }
    text_of(bytes).ok_or(FileProblem::Binary { path: path() })
}

/// UTF-8 without NUL bytes, or nothing: configs, kubeconfigs and PEM files are text.
pub(crate) fn text_of(bytes: Vec<u8>) -> Option<String> {
    if bytes.contains(&0) {
        return None;
    }
    String::from_utf8(bytes).ok()
}

pub(crate) fn kind_name(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "directory"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_socket() {
        "socket"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_block_device() || t.is_char_device() {
        "device"
    } else if t.is_file() {
        "regular file"
    } else {
        "special file"
    }
}
