//! Where nodeward's kernel state lives between agent processes: a directory on a bpf
//! filesystem holding the maps (pinned by aya, by name) and one pinned link per program.
//! A restarted or upgraded agent adopts what it finds: the maps keep their contents and
//! each link gets the new program swapped in atomically, so there is no instant in which
//! pods are unguarded and never a second copy of a program on the cgroup.

use std::{
    collections::BTreeSet,
    fs,
    os::{
        fd::{AsFd, BorrowedFd, OwnedFd},
        unix::fs::DirBuilderExt as _,
    },
    path::{Path, PathBuf},
};

use aya_obj::generated::bpf_attach_type;
use tracing::{info, warn};

use super::sys;

/// Bumped whenever a map's layout changes, so an agent never adopts maps it cannot read.
const LAYOUT: &str = "v1";

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error(
        "bpfPinPath {path} is not on a bpf filesystem; mount one there (mount -t bpf bpf {path}) or point bpfPinPath at one"
    )]
    NotBpffs { path: PathBuf },
    #[error("cannot use pin directory {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The pin directory of this agent's layout.
#[derive(Debug, Clone)]
pub struct Pins {
    root: PathBuf,
}

impl Pins {
    /// Checks that `base` is on bpffs and creates `<base>/v1/{maps,links}` (mode 0700).
    pub fn open(base: &Path) -> Result<Self, PinError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| PinError::Io { path, source }
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(base)
            .map_err(io(base))?;
        let stat = nix::sys::statfs::statfs(base).map_err(|e| io(base)(e.into()))?;
        if stat.filesystem_type() != nix::sys::statfs::BPF_FS_MAGIC {
            return Err(PinError::NotBpffs {
                path: base.to_owned(),
            });
        }
        let pins = Self {
            root: base.join(LAYOUT),
        };
        for dir in [pins.maps(), pins.links()] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(io(&dir))?;
        }
        Ok(pins)
    }

    /// Where aya pins the maps, one file per map name.
    pub fn maps(&self) -> PathBuf {
        self.root.join("maps")
    }

    /// Where the program links are pinned, one file per program name.
    pub fn links(&self) -> PathBuf {
        self.root.join("links")
    }
}

/// What `attach_pinned` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attached {
    /// No link was pinned: attached and pinned a new one.
    New,
    /// A pinned link on this cgroup now runs the new program.
    Replaced,
    /// The pinned link was on another (or a removed) cgroup: a new link replaced it.
    Moved,
}

/// Makes `program` run on `cgroup` through the link pinned as `name`.
///
/// `attach` creates a new link when one is needed (see [`cgroup_link`]). Replacement
/// goes through `BPF_LINK_UPDATE`, which swaps the program atomically.
pub fn attach_pinned(
    pins: &Pins,
    name: &str,
    program: impl AsFd,
    cgroup_id: u64,
    attach: impl FnOnce() -> std::io::Result<OwnedFd>,
) -> anyhow::Result<Attached> {
    let path = pins.links().join(name);
    let existing = match sys::obj_get(&path) {
        Ok(fd) => Some(fd),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => {
            return Err(
                anyhow::Error::new(err).context(format!("opening pinned link {}", path.display()))
            );
        }
    };
    let Some(link) = existing else {
        pin_new(attach, &path)?;
        return Ok(Attached::New);
    };
    let info = sys::cgroup_link_info(&link)?;
    if info.cgroup_id == cgroup_id {
        sys::link_update(link.as_fd(), program.as_fd()).map_err(|e| {
            anyhow::Error::new(e)
                .context(format!("replacing the program of link {}", path.display()))
        })?;
        info!(
            program = name,
            link = info.id,
            old_program = info.program_id,
            "adopted pinned link; program replaced in place"
        );
        return Ok(Attached::Replaced);
    }
    // Attach to the new cgroup first, then swing the pin over and detach the old link,
    // so the new cgroup is never unguarded.
    // bpffs refuses dots in names (EPERM; they are reserved for the kernel's own files).
    let staging = pins.links().join(format!("{name}_new"));
    let _ = fs::remove_file(&staging);
    pin_new(attach, &staging)?;
    fs::rename(&staging, &path)
        .map_err(|e| anyhow::Error::new(e).context(format!("replacing pin {}", path.display())))?;
    if let Err(err) = sys::link_detach(link.as_fd()) {
        warn!(program = name, link = info.id, error = %err, "detaching the link from the previous cgroup failed");
    }
    info!(
        program = name,
        old_cgroup = info.cgroup_id,
        cgroup = cgroup_id,
        "moved pinned link to the configured cgroup"
    );
    Ok(Attached::Moved)
}

/// Creates a link with `attach` and pins it at `path`; a link that cannot be pinned is
/// detached again, so nothing is left attached that no agent can find.
fn pin_new(attach: impl FnOnce() -> std::io::Result<OwnedFd>, path: &Path) -> anyhow::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let link = attach().map_err(|e| anyhow::Error::new(e).context(format!("attaching {name}")))?;
    if let Err(err) = sys::obj_pin(link.as_fd(), path) {
        let _ = sys::link_detach(link.as_fd());
        return Err(anyhow::Error::new(err).context(format!("pinning {}", path.display())));
    }
    Ok(())
}

/// A cgroup link of `program` at `attach_type` on the cgroup whose directory `cgroup` is
/// open. Links always join the cgroup's program list in multi mode: other programs on the
/// cgroup (Cilium's, systemd's) keep running.
pub fn cgroup_link(
    program: BorrowedFd<'_>,
    cgroup: BorrowedFd<'_>,
    attach_type: bpf_attach_type,
) -> std::io::Result<OwnedFd> {
    sys::cgroup_link(program, cgroup, attach_type)
}

/// What `sync_interface_links` changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InterfaceLinks {
    /// Interfaces that got a new link.
    pub attached: Vec<u32>,
    /// Pinned links an earlier agent left on a wanted interface, now running `program`.
    pub adopted: Vec<u32>,
    /// Links detached because their interface no longer needs (or no longer has) one.
    pub detached: Vec<u32>,
}

/// Makes `program` run at tcx egress on exactly the interfaces in `wanted`, through links
/// pinned as `<name>_if<ifindex>`. `attach` creates a link (see [`tcx_egress_link`]) where
/// none is pinned; it must do so in the interfaces' network namespace, where the kernel
/// resolves their indexes. `current` holds the interfaces this agent already put
/// `program` on and is kept up to date, so a steady state costs one directory listing.
pub fn sync_interface_links(
    pins: &Pins,
    name: &str,
    program: BorrowedFd<'_>,
    wanted: &BTreeSet<u32>,
    current: &mut BTreeSet<u32>,
    mut attach: impl FnMut(u32) -> anyhow::Result<OwnedFd>,
) -> anyhow::Result<InterfaceLinks> {
    let mut changes = InterfaceLinks::default();
    let dir = pins.links();
    let prefix = format!("{name}_if");
    let mut pinned = BTreeSet::new();
    let entries = fs::read_dir(&dir)
        .map_err(|e| anyhow::Error::new(e).context(format!("listing {}", dir.display())))?;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(ifindex) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let path = entry.path();
        let link = sys::obj_get(&path).map_err(|e| {
            anyhow::Error::new(e).context(format!("opening pinned link {}", path.display()))
        })?;
        // A link whose interface went away is defunct (ifindex 0); its index may since
        // name another interface, so it is replaced, never trusted.
        let live = sys::tcx_link_ifindex(&link).is_ok_and(|i| i == ifindex);
        if live && wanted.contains(&ifindex) {
            if !current.contains(&ifindex) {
                sys::link_update(link.as_fd(), program).map_err(|e| {
                    anyhow::Error::new(e)
                        .context(format!("replacing the program of link {}", path.display()))
                })?;
                current.insert(ifindex);
                changes.adopted.push(ifindex);
            }
            pinned.insert(ifindex);
            continue;
        }
        if live && let Err(err) = sys::link_detach(link.as_fd()) {
            warn!(link = %path.display(), error = %err, "detaching a link no longer needed failed");
        }
        fs::remove_file(&path)
            .map_err(|e| anyhow::Error::new(e).context(format!("removing {}", path.display())))?;
        current.remove(&ifindex);
        changes.detached.push(ifindex);
    }
    for &ifindex in wanted.difference(&pinned) {
        let link = attach(ifindex)
            .map_err(|e| e.context(format!("attaching {name} to interface {ifindex}")))?;
        let path = dir.join(format!("{prefix}{ifindex}"));
        if let Err(err) = sys::obj_pin(link.as_fd(), &path) {
            let _ = sys::link_detach(link.as_fd());
            return Err(anyhow::Error::new(err).context(format!("pinning {}", path.display())));
        }
        current.insert(ifindex);
        changes.attached.push(ifindex);
    }
    current.retain(|i| wanted.contains(i));
    Ok(changes)
}

/// A tcx egress link of `program` on interface `ifindex` of the calling thread's network
/// namespace, ahead of the programs already there.
pub fn tcx_egress_link(program: BorrowedFd<'_>, ifindex: u32) -> std::io::Result<OwnedFd> {
    sys::tcx_egress_link(program, ifindex)
}

/// Detaches the link pinned at `path` (if its hook still exists) and removes the pin;
/// nothing pinned there is not an error.
pub fn unpin_link(path: &Path) -> anyhow::Result<()> {
    match sys::obj_get(path) {
        Ok(link) => {
            if let Err(err) = sys::link_detach(link.as_fd()) {
                // A link whose cgroup ended is detached already.
                if err.raw_os_error() != Some(libc::ENOLINK) {
                    warn!(link = %path.display(), error = %err, "detaching failed; removing the pin anyway");
                }
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => warn!(link = %path.display(), error = %err, "cannot open pinned link"),
    }
    match fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(anyhow::Error::new(err).context(format!("removing {}", path.display())))
        }
        _ => Ok(()),
    }
}

/// Detaches every pinned link and removes every pin under `base`; returns what was
/// removed, for the operator.
pub fn remove_all(base: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let root = base.join(LAYOUT);
    for (dir, detach) in [(root.join("links"), true), (root.join("maps"), false)] {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if detach {
                match sys::obj_get(&path) {
                    Ok(link) => {
                        if let Err(err) = sys::link_detach(link.as_fd()) {
                            warn!(link = %path.display(), error = %err, "detaching failed; removing the pin anyway");
                        }
                    }
                    Err(err) => {
                        warn!(link = %path.display(), error = %err, "cannot open pinned link");
                    }
                }
            }
            fs::remove_file(&path).map_err(|e| {
                anyhow::Error::new(e).context(format!("removing {}", path.display()))
            })?;
            removed.push(path);
        }
        let _ = fs::remove_dir(&dir);
    }
    let _ = fs::remove_dir(&root);
    let _ = fs::remove_dir(base);
    Ok(removed)
}
