//! Pod identity from cgroup paths. Kubelet names a pod's cgroup after its UID and the
//! runtime names each container's cgroup after the container id; both drivers and the
//! common runtimes are understood:
//!
//! - systemd: `kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid with _>.slice/cri-containerd-<id>.scope`
//!   (CRI-O: `crio-<id>.scope`, docker: `docker-<id>.scope`)
//! - cgroupfs: `kubepods/besteffort/pod<uid>/<id>` (CRI-O: `crio-<id>`)

use std::{
    collections::{HashMap, HashSet, VecDeque},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

/// What a cgroup path says about the pod and container it belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupIdentity {
    pub pod_uid: Option<String>,
    pub container_id: Option<String>,
}

/// Reads the pod UID and container id out of a cgroup path.
pub fn parse_cgroup_path(path: &str) -> CgroupIdentity {
    let mut identity = CgroupIdentity::default();
    for component in path.split('/').filter(|c| !c.is_empty()) {
        if identity.pod_uid.is_none() {
            identity.pod_uid = pod_uid(component);
        } else if identity.container_id.is_none() {
            identity.container_id = container_id(component);
        }
    }
    identity
}

fn pod_uid(component: &str) -> Option<String> {
    let raw = match component.strip_suffix(".slice") {
        // systemd escapes the UID's dashes as underscores.
        Some(slice) => slice.rsplit_once("-pod")?.1.replace('_', "-"),
        None => component.strip_prefix("pod")?.to_owned(),
    };
    is_pod_uid(&raw).then_some(raw)
}

/// A UUID (ordinary pods) or 32 hex digits (static pods, whose UID is a hash of their
/// manifest).
fn is_pod_uid(s: &str) -> bool {
    let hex = |c: char| c.is_ascii_hexdigit() && !c.is_ascii_uppercase();
    match s.len() {
        32 => s.chars().all(hex),
        36 => s.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                hex(c)
            }
        }),
        _ => false,
    }
}

fn container_id(component: &str) -> Option<String> {
    let base = component.strip_suffix(".scope").unwrap_or(component);
    // conmon, CRI-O's per-container monitor, has its own scope; it is not the container.
    if base.starts_with("crio-conmon-") {
        return None;
    }
    let id = ["cri-containerd-", "crio-", "docker-", "containerd-"]
        .iter()
        .find_map(|prefix| base.strip_prefix(prefix))
        .unwrap_or(base);
    (id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit())).then(|| id.to_ascii_lowercase())
}

/// A cgroup below the pod cgroup, as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupEntry {
    /// Path relative to the cgroup2 mount, e.g. `kubepods.slice/.../cri-containerd-<id>.scope`.
    pub path: String,
    pub identity: CgroupIdentity,
}

/// How deep kubelet's layout goes below the pod cgroup (`QoS` class, pod, container, and
/// a level for runtimes that nest); deeper cgroups are created inside containers.
const MAX_DEPTH: usize = 6;
/// Ids remembered as not found; kernel cgroup ids are never reused within a boot.
const MAX_MISSES: usize = 4096;

/// Maps cgroup ids (what the kernel reports: the inode number of the cgroup directory)
/// to cgroups below the pod cgroup, and pod UIDs to their pod-level cgroup. It rescans
/// the tree when asked about something it has not seen, so containers and pods started
/// later are found without a watcher; each scan replaces the last, so removed cgroups do
/// not accumulate.
pub struct CgroupIndex {
    cgroup_root: PathBuf,
    pod_cgroup: PathBuf,
    by_id: HashMap<u64, CgroupEntry>,
    pods: HashMap<String, u64>,
    misses: HashSet<u64>,
}

impl CgroupIndex {
    /// `pod_cgroup` must lie below `cgroup_root`, the cgroup2 mount.
    pub fn new(cgroup_root: PathBuf, pod_cgroup: PathBuf) -> Self {
        Self {
            cgroup_root,
            pod_cgroup,
            by_id: HashMap::new(),
            pods: HashMap::new(),
            misses: HashSet::new(),
        }
    }

    /// The id of the pod-level cgroup of the pod with this UID, rescanning once if it is
    /// not known yet.
    pub fn pod_cgroup_id(&mut self, uid: &str) -> Option<u64> {
        if !self.pods.contains_key(uid) {
            self.rescan();
        }
        self.pods.get(uid).copied()
    }

    /// Forgets the last scan, so the next question rescans (pods may have come or gone).
    pub fn invalidate(&mut self) {
        self.by_id.clear();
        self.pods.clear();
    }

    /// The cgroup with this id, if it is (or was, when last scanned) below the pod cgroup.
    pub fn lookup(&mut self, id: u64) -> Option<&CgroupEntry> {
        if !self.by_id.contains_key(&id) && !self.misses.contains(&id) {
            self.rescan();
            if !self.by_id.contains_key(&id) {
                if self.misses.len() >= MAX_MISSES {
                    self.misses.clear();
                }
                self.misses.insert(id);
            }
        }
        self.by_id.get(&id)
    }

    fn rescan(&mut self) {
        self.invalidate();
        // Breadth first, so a pod's own cgroup is met before anything below it.
        let mut queue = VecDeque::from([(self.pod_cgroup.clone(), 0)]);
        while let Some((dir, depth)) = queue.pop_front() {
            let Ok(meta) = std::fs::metadata(&dir) else {
                continue;
            };
            let relative = relative_path(&self.cgroup_root, &dir);
            let identity = parse_cgroup_path(&relative);
            if let (Some(uid), None) = (&identity.pod_uid, &identity.container_id) {
                // The shallowest cgroup naming the pod is the pod's own.
                self.pods.entry(uid.clone()).or_insert(meta.ino());
            }
            self.by_id.insert(
                meta.ino(),
                CgroupEntry {
                    identity,
                    path: relative,
                },
            );
            if depth == MAX_DEPTH {
                continue;
            }
            let Ok(children) = std::fs::read_dir(&dir) else {
                continue;
            };
            for child in children.flatten() {
                if child.file_type().is_ok_and(|t| t.is_dir()) {
                    queue.push_back((child.path(), depth + 1));
                }
            }
        }
    }
}

fn relative_path(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests;
