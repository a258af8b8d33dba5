//! The packet hook (`imds_egress`, `cgroup_skb/egress`) only where it is needed. It judges
//! what raw, ICMP and UDP-Lite sockets send, which no socket call names a destination
//! for; but on a cgroup it runs for every packet of every socket below it, a few percent
//! of a busy UDP sender's throughput. Few pods ever open such a socket, so each pod gets
//! its own link once it does: `imds_sock_create` notices the socket being created and
//! asks (a map entry and a ring wake-up); this task attaches the link to the pod's
//! cgroup, pins it, and marks the cgroup guarded so the kernel stops asking. Until then
//! (milliseconds), the node-side guard drops what such a socket sends to a blocked
//! prefix as it leaves the node.

use std::{
    collections::{BTreeMap, BTreeSet},
    os::{
        fd::{AsFd as _, OwnedFd},
        unix::fs::MetadataExt as _,
    },
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use aya::maps::{HashMap, MapData, RingBuf};
use aya_obj::generated::bpf_attach_type;
use nodeward_common::imds as shared;
use tokio::io::unix::AsyncFd;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::raw_sockets;
use crate::{
    bpf::{self, Attached, Pins},
    cgroup::{open_cgroup, subtree},
    identity::{CgroupIndex, parse_cgroup_path},
    metrics::Metrics,
};

/// How often the requests map is read without a wake-up (a full ring, a lost wake-up),
/// and guards of removed cgroups are let go.
const POLL: Duration = Duration::from_secs(1);

pub struct PacketGuard {
    program: OwnedFd,
    pins: Pins,
    cgroup_root: PathBuf,
    pod_cgroup: PathBuf,
    index: CgroupIndex,
    metrics: Arc<Metrics>,
    /// `IMDS_PKT_GUARDS`: what the kernel reads to stop asking.
    guards: HashMap<MapData, u64, u32>,
    /// `IMDS_PKT_WANTED`: what the kernel asked for.
    wanted: HashMap<MapData, u64, u32>,
    /// The cgroups this agent keeps a link on, with their directory: a cgroup whose
    /// directory is gone (or holds another cgroup) has ended, and its link with it.
    guarded: BTreeMap<u64, PathBuf>,
    /// Requests whose attach failed, so a lasting failure is logged once.
    failing: BTreeSet<u64>,
}

impl PacketGuard {
    pub fn new(
        program: OwnedFd,
        pins: Pins,
        cgroup_root: PathBuf,
        pod_cgroup: PathBuf,
        maps: (HashMap<MapData, u64, u32>, HashMap<MapData, u64, u32>),
        metrics: Arc<Metrics>,
    ) -> Self {
        let index = CgroupIndex::new(cgroup_root.clone(), pod_cgroup.clone());
        Self {
            program,
            pins,
            cgroup_root,
            pod_cgroup,
            index,
            metrics,
            guards: maps.0,
            wanted: maps.1,
            guarded: BTreeMap::new(),
            failing: BTreeSet::new(),
        }
    }

    /// Takes over what is already there: the links an earlier agent pinned get this
    /// agent's program, and the cgroups whose processes hold such a socket opened before
    /// `imds_sock_create` was attached (found in /proc) are guarded. Only once all of
    /// them are is the link of agents that put the hook on the whole pod cgroup taken
    /// off (see `drain`), so no socket is left without it in between.
    pub fn start(&mut self, proc_root: &Path) -> anyhow::Result<()> {
        self.adopt()?;
        let holders = raw_sockets::holders(proc_root, &self.pod_cgroup);
        if !holders.is_empty() {
            info!(
                cgroups = holders.len(),
                "processes already hold raw, ICMP or UDP-Lite sockets"
            );
        }
        for id in holders {
            self.request(id)?;
        }
        self.drain()
    }

    /// Guards every cgroup the kernel asked for (and any `start` added). A request is
    /// removed once answered, and kept for the next pass when attaching failed.
    pub fn drain(&mut self) -> anyhow::Result<()> {
        let requested: Vec<u64> = self
            .wanted
            .keys()
            .collect::<Result<_, _>>()
            .map_err(bpf::map_err(shared::MAP_PACKET_WANTED))?;
        for id in requested {
            if let Err(err) = self.guard(id) {
                // Logged once per cgroup; a stale scan may be the cause, so rescan.
                if self.failing.insert(id) {
                    warn!(
                        cgroup = id,
                        error = format!("{err:#}"),
                        "attaching the packet hook failed; retrying every second"
                    );
                }
                self.index.invalidate();
                continue;
            }
            self.failing.remove(&id);
            // A request made again meanwhile is answered by the guard now in place.
            let _ = self.wanted.remove(&id);
        }
        if self.failing.is_empty() {
            self.retire_whole_cgroup_link()?;
        }
        self.metrics.packet_guards(self.guarded.len());
        Ok(())
    }

    /// Lets go of the links of cgroups that have ended; the kernel detached them with the
    /// cgroup, and the pin and the map entry are all that is left.
    pub fn sweep(&mut self) -> anyhow::Result<()> {
        let ended: Vec<u64> = self
            .guarded
            .iter()
            .filter(|(id, dir)| std::fs::metadata(dir).map_or(true, |m| m.ino() != **id))
            .map(|(id, _)| *id)
            .collect();
        for id in ended {
            self.forget(id)?;
            info!(cgroup = id, "cgroup ended; its packet hook went with it");
        }
        self.metrics.packet_guards(self.guarded.len());
        Ok(())
    }

    /// Asks for a guard as the kernel does, for `start`.
    fn request(&mut self, id: u64) -> anyhow::Result<()> {
        self.wanted
            .insert(id, 0, 0)
            .map_err(bpf::map_err(shared::MAP_PACKET_WANTED))?;
        Ok(())
    }

    /// Attaches the hook for a socket created in cgroup `id`: to its pod's cgroup, which
    /// covers the pod's other containers too, or to the cgroup itself when it is no
    /// pod's. A cgroup that has already ended needs nothing.
    fn guard(&mut self, id: u64) -> anyhow::Result<()> {
        let Some((target, dir)) = self.target(id) else {
            info!(
                cgroup = id,
                "cgroup ended before its packet hook was attached"
            );
            return Ok(());
        };
        if self.guarded.contains_key(&target) {
            return Ok(());
        }
        let path = dir.display().to_string();
        let how = self.link(target, dir)?;
        info!(
            cgroup = target,
            path,
            asked_by = id,
            ?how,
            "packet hook attached"
        );
        Ok(())
    }

    /// Puts this agent's program on cgroup `id` (directory `dir`) through the link pinned
    /// for it, new or adopted, and marks the cgroup guarded: after the link, so the kernel
    /// stops asking only once the hook is there.
    fn link(&mut self, id: u64, dir: PathBuf) -> anyhow::Result<Attached> {
        let cgroup = open_cgroup(&dir)?;
        let how = bpf::attach_pinned(&self.pins, &pin_name(id), &self.program, id, || {
            bpf::cgroup_link(
                self.program.as_fd(),
                cgroup.as_fd(),
                bpf_attach_type::BPF_CGROUP_INET_EGRESS,
            )
        })?;
        self.guards
            .insert(id, 0, 0)
            .map_err(bpf::map_err(shared::MAP_PACKET_GUARDS))?;
        self.guarded.insert(id, dir);
        Ok(how)
    }

    /// The cgroup to guard for cgroup `id`, and its directory.
    fn target(&mut self, id: u64) -> Option<(u64, PathBuf)> {
        let dir = self.dir_of(id)?;
        let relative = dir.strip_prefix(&self.cgroup_root).ok()?.to_string_lossy();
        let pod = parse_cgroup_path(&relative)
            .pod_uid
            .and_then(|uid| self.index.pod_cgroup_id(&uid))
            .and_then(|pod| Some((pod, self.dir_of(pod)?)));
        Some(pod.unwrap_or((id, dir)))
    }

    /// The directory of cgroup `id` below the pod cgroup. The index knows the levels
    /// kubelet makes; a cgroup nested deeper inside a container is searched for.
    fn dir_of(&mut self, id: u64) -> Option<PathBuf> {
        if let Some(entry) = self.index.lookup(id) {
            return Some(self.cgroup_root.join(&entry.path));
        }
        subtree(&self.pod_cgroup, raw_sockets::MAX_DEPTH)
            .into_iter()
            .find(|dir| std::fs::metadata(dir).is_ok_and(|m| m.ino() == id))
    }

    /// The links pinned by an earlier agent: live ones get this agent's program, those of
    /// ended cgroups go.
    fn adopt(&mut self) -> anyhow::Result<()> {
        let dir = self.pins.links();
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
        let pinned: BTreeSet<u64> = entries
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_prefix(shared::PACKET_GUARD_PIN_PREFIX)?
                    .parse()
                    .ok()
            })
            .collect();
        for id in pinned {
            match self.dir_of(id) {
                Some(dir) => {
                    self.link(id, dir)?;
                }
                None => self.forget(id)?,
            }
        }
        // Entries no pin backs (a crash between the two) would silence requests for good.
        let marked: Vec<u64> = self
            .guards
            .keys()
            .collect::<Result<_, _>>()
            .map_err(bpf::map_err(shared::MAP_PACKET_GUARDS))?;
        for id in marked
            .into_iter()
            .filter(|id| !self.guarded.contains_key(id))
        {
            let _ = self.guards.remove(&id);
        }
        if !self.guarded.is_empty() {
            info!(cgroups = ?self.guarded.keys().collect::<Vec<_>>(), "adopted pinned packet hooks");
        }
        Ok(())
    }

    /// Removes the guard of cgroup `id`: its pin (detaching the link if the cgroup still
    /// exists) and its map entry.
    fn forget(&mut self, id: u64) -> anyhow::Result<()> {
        let pin = self.pins.links().join(pin_name(id));
        bpf::unpin_link(&pin)?;
        let _ = self.guards.remove(&id);
        self.guarded.remove(&id);
        Ok(())
    }

    /// Earlier agents put the hook on the whole pod cgroup, pinned under the program's
    /// own name; per-pod links replace it once every pod that asked has its own.
    fn retire_whole_cgroup_link(&self) -> anyhow::Result<()> {
        let pin = self.pins.links().join(shared::PROG_EGRESS);
        if pin.exists() {
            bpf::unpin_link(&pin)?;
            info!(
                cgroup = %self.pod_cgroup.display(),
                "packet hook on the whole pod cgroup replaced by per-pod hooks"
            );
        }
        Ok(())
    }
}

fn pin_name(cgroup_id: u64) -> String {
    format!("{}{cgroup_id}", shared::PACKET_GUARD_PIN_PREFIX)
}

/// Answers the kernel's requests until cancelled: at once on a wake-up, and every
/// [`POLL`] for requests whose wake-up was lost; ended cgroups are let go on the poll.
pub async fn run(
    mut guard: PacketGuard,
    mut ring: AsyncFd<RingBuf<MapData>>,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = token.cancelled() => return Ok(()),
            ready = ring.readable_mut() => {
                let mut ready = ready.context("polling the packet hook requests ring")?;
                ready.clear_ready();
                // The records only wake this task; the map says what is asked.
                while ready.get_inner_mut().next().is_some() {}
            }
            _ = poll.tick() => {
                tokio::task::block_in_place(|| guard.sweep())?;
            }
        }
        // Cgroup scans and bpf(2) calls: blocking work, but short.
        tokio::task::block_in_place(|| guard.drain())?;
    }
}
