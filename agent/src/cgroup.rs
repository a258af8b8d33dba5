//! Where the pods are: the cgroup2 mount (read from mountinfo, since hybrid hosts mount it
//! at /sys/fs/cgroup/unified and modern ones at /sys/fs/cgroup) and kubelet's pod cgroup
//! below it.

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use procfs::{FromBufRead as _, process::MountInfos};

/// Why the pod cgroup could not be located.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot read /proc/self/mountinfo")]
    MountInfo(#[source] procfs::ProcError),
    #[error(
        "no cgroup2 filesystem is mounted (looked in /proc/self/mountinfo); nodeward needs cgroup v2"
    )]
    NoCgroup2,
    #[error(
        "no pod cgroup under {root}: neither kubepods.slice (systemd driver) nor kubepods (cgroupfs driver) exists; set podCgroupPath"
    )]
    NoPodCgroup { root: PathBuf },
    #[error("pod cgroup {path} is not a directory of a cgroup2 filesystem")]
    NotACgroup { path: PathBuf },
    #[error("cannot open pod cgroup {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The cgroup2 mount point in this mount namespace, preferring the widest view of the
/// hierarchy. In a container with its own cgroup namespace, the runtime's
/// `/sys/fs/cgroup` shows root `/` (the container's own cgroup), while a hostPath mount of
/// the node's hierarchy shows a root above it (`/../../..`); the latter is the one that
/// contains the pods. Outside containers the usual single mount has root `/`.
pub fn find_cgroup2_mount() -> Result<PathBuf, CgroupError> {
    let file = File::open("/proc/self/mountinfo")
        .map_err(|e| CgroupError::MountInfo(procfs::ProcError::from(e)))?;
    let infos =
        MountInfos::from_buf_read(std::io::BufReader::new(file)).map_err(CgroupError::MountInfo)?;
    cgroup2_mount_in(&infos).ok_or(CgroupError::NoCgroup2)
}

fn cgroup2_mount_in(infos: &MountInfos) -> Option<PathBuf> {
    // Rank: levels above the namespace root first, then the namespace root itself, then
    // sub-trees; among equals the first mount wins.
    let rank = |root: &str| {
        let up = root
            .split('/')
            .take_while(|c| c.is_empty() || *c == "..")
            .filter(|c| *c == "..")
            .count();
        (up, root == "/")
    };
    infos
        .0
        .iter()
        .filter(|m| m.fs_type == "cgroup2")
        .rev()
        .max_by_key(|m| rank(&m.root))
        .map(|m| m.mount_point.clone())
}

/// The pod cgroup's path relative to `cgroup_root`: `configured` if given, else the first
/// of kubelet's two layouts that exists.
pub fn resolve_pod_cgroup(
    cgroup_root: &Path,
    configured: Option<&Path>,
) -> Result<PathBuf, CgroupError> {
    let relative = match configured {
        Some(path) => path.to_owned(),
        None => ["kubepods.slice", "kubepods"]
            .into_iter()
            .map(PathBuf::from)
            .find(|candidate| cgroup_root.join(candidate).is_dir())
            .ok_or_else(|| CgroupError::NoPodCgroup {
                root: cgroup_root.to_owned(),
            })?,
    };
    let absolute = cgroup_root.join(&relative);
    if !absolute.join("cgroup.procs").is_file() {
        return Err(CgroupError::NotACgroup { path: absolute });
    }
    Ok(absolute)
}

/// Where `cgroup` sits for the kernel: its depth below `cgroup_root` (the level the
/// `ancestor_cgroup_id` helpers take) and its id (the directory's inode number).
pub fn level_and_id(cgroup_root: &Path, cgroup: &Path) -> std::io::Result<(u32, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let relative = cgroup.strip_prefix(cgroup_root).unwrap_or(cgroup);
    let level = u32::try_from(relative.components().count()).unwrap_or(0);
    Ok((level, std::fs::metadata(cgroup)?.ino()))
}

/// `dir` and every cgroup below it, to `max_depth` levels down (depth first). Cgroups
/// removed meanwhile are skipped.
pub fn subtree(dir: &Path, max_depth: usize) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![(dir.to_owned(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        if depth < max_depth {
            for child in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if child.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push((child.path(), depth + 1));
                }
            }
        }
        found.push(dir);
    }
    found
}

/// Opens a cgroup directory for attaching programs.
pub fn open_cgroup(path: &Path) -> Result<File, CgroupError> {
    File::open(path).map_err(|source| CgroupError::Open {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infos(text: &str) -> MountInfos {
        MountInfos::from_buf_read(text.as_bytes()).unwrap()
    }

    #[test]
    fn finds_hybrid_and_unified_layouts() {
        let hybrid = "31 23 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount_in(&infos(hybrid)),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified =
            "35 24 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            cgroup2_mount_in(&infos(unified)),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
    }

    #[test]
    fn prefers_the_whole_hierarchy_over_a_namespaced_view() {
        let text = "50 24 0:30 /kubepods.slice/pod /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n\
                    51 24 0:30 / /host/sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount_in(&infos(text)),
            Some(PathBuf::from("/host/sys/fs/cgroup"))
        );
    }

    #[test]
    fn in_a_container_prefers_the_host_hierarchy() {
        let text = "60 50 0:30 / /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw\n\
                    61 50 0:30 /../../.. /host/sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount_in(&infos(text)),
            Some(PathBuf::from("/host/sys/fs/cgroup"))
        );
    }

    #[test]
    fn no_cgroup2_is_none() {
        let text = "31 23 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert_eq!(cgroup2_mount_in(&infos(text)), None);
    }

    #[test]
    fn detects_either_kubelet_layout() {
        for layout in ["kubepods.slice", "kubepods"] {
            let root = tempfile::tempdir().unwrap();
            std::fs::create_dir(root.path().join(layout)).unwrap();
            std::fs::write(root.path().join(layout).join("cgroup.procs"), "").unwrap();
            assert_eq!(
                resolve_pod_cgroup(root.path(), None).unwrap(),
                root.path().join(layout)
            );
        }
        let empty = tempfile::tempdir().unwrap();
        let err = resolve_pod_cgroup(empty.path(), None).unwrap_err();
        assert!(err.to_string().contains("podCgroupPath"), "{err}");
    }

    #[test]
    fn configured_path_must_be_a_cgroup() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("pods")).unwrap();
        let err = resolve_pod_cgroup(root.path(), Some(Path::new("pods"))).unwrap_err();
        assert!(matches!(err, CgroupError::NotACgroup { .. }), "{err}");
    }
}
