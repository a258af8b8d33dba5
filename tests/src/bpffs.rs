//! A private bpf filesystem per simulated node, for the agent's pins: every mount of bpffs
//! is its own instance, so tests pin side by side without seeing each other's objects, and
//! unmounting releases everything pinned there (programs detach when their last link goes).

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// A mounted bpffs; dropping it unmounts it.
#[derive(Debug)]
pub(crate) struct BpfFs {
    dir: PathBuf,
}

impl BpfFs {
    /// Mounts a new bpffs instance on `dir`, creating the directory.
    pub(crate) fn mount(dir: PathBuf) -> Self {
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        mount(
            Some("bpf"),
            &dir,
            Some("bpf"),
            MsFlags::empty(),
            None::<&str>,
        )
        .unwrap_or_else(|e| panic!("mount bpffs on {}: {e}", dir.display()));
        Self { dir }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        unmount(&self.dir);
    }
}

/// Lazily unmounts whatever is mounted on `dir`; reports (never panics) on failure, as it
/// runs during cleanup.
pub(crate) fn unmount(dir: &Path) {
    if let Err(e) = umount2(dir, MntFlags::MNT_DETACH) {
        eprintln!("testkit: unmount {}: {e}", dir.display());
    }
}

/// Mount points at or below `dir`, from /proc/self/mountinfo, deepest first.
pub(crate) fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let info = crate::mountinfo::read().unwrap_or_default();
    let mut found: Vec<PathBuf> = crate::mountinfo::mounts(&info)
        .map(|(point, _)| point)
        .filter(|mount| mount.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}
