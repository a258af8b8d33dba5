//! IMDS enforcement. Programs on the pod cgroup guard every socket way out of a pod
//! towards the blocked prefixes: `connect4`/`connect6` (TCP, connected UDP, TCP Fast
//! Open) and `sendmsg4`/`sendmsg6` (unconnected UDP). They apply to every pod whatever its
//! network, hostNetwork pods included, and to pods and containers created later, since
//! cgroup programs reach all descendants. Raw, ICMP and UDP-Lite sockets name no
//! destination in a socket call; a pod that opens one gets the packet hook
//! (`cgroup_skb/egress`) on its own cgroup (`packet_guard`). What no pod hook sees (frames
//! written on packet sockets, and those sockets' packets until their pod's hook is on) is
//! judged on the node's side, at tcx egress of the interfaces that lead to the blocked
//! prefixes (`node_guard`). Links and maps are pinned: enforcement stays when the agent
//! stops, and a new agent adopts it.

mod events;
mod maps;
mod node_guard;
mod packet_guard;
mod raw_sockets;
mod reconcile;

use std::{
    os::{fd::AsFd as _, unix::fs::MetadataExt as _},
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{Array, PerCpuArray, RingBuf},
    programs::{CgroupSkb, CgroupSock, CgroupSockAddr, SchedClassifier},
};
use aya_obj::generated::bpf_attach_type;
use nodeward_common::imds as shared;
use tokio::sync::watch;
use tracing::info;

use self::{
    maps::ImdsMaps, node_guard::NodeGuard, packet_guard::PacketGuard, reconcile::Reconciler,
};
use crate::{
    bpf, caps,
    cgroup::{self, open_cgroup},
    config::Config,
    identity::CgroupIndex,
    module::{Module, ModuleContext},
    pods::PodSnapshot,
};

/// The programs on socket calls, and where each attaches.
const SOCK_ADDR_PROGRAMS: [(&str, bpf_attach_type); 4] = [
    (
        shared::PROG_CONNECT4,
        bpf_attach_type::BPF_CGROUP_INET4_CONNECT,
    ),
    (
        shared::PROG_CONNECT6,
        bpf_attach_type::BPF_CGROUP_INET6_CONNECT,
    ),
    (
        shared::PROG_SENDMSG4,
        bpf_attach_type::BPF_CGROUP_UDP4_SENDMSG,
    ),
    (
        shared::PROG_SENDMSG6,
        bpf_attach_type::BPF_CGROUP_UDP6_SENDMSG,
    ),
];

pub struct ImdsEnforcer {
    cgroup_root: PathBuf,
    pod_cgroup: PathBuf,
    config: watch::Receiver<Arc<Config>>,
    pods: watch::Receiver<PodSnapshot>,
    started: bool,
}

impl ImdsEnforcer {
    pub fn new(
        cgroup_root: PathBuf,
        pod_cgroup: PathBuf,
        config: watch::Receiver<Arc<Config>>,
        pods: watch::Receiver<PodSnapshot>,
    ) -> Self {
        Self {
            cgroup_root,
            pod_cgroup,
            config,
            pods,
            started: false,
        }
    }
}

impl ImdsEnforcer {
    /// Loads the node-side program and fills what it reads about the pod cgroup; the
    /// reconciler attaches it (and keeps it attached) on every pass.
    fn node_guard(
        &self,
        ebpf: &mut Ebpf,
        ctx: &ModuleContext,
        config: &Config,
    ) -> anyhow::Result<NodeGuard> {
        let program = bpf::load_program::<SchedClassifier>(ebpf, shared::PROG_UPLINK)?;
        let program = program
            .fd()?
            .as_fd()
            .try_clone_to_owned()
            .context("duplicating the uplink program's fd")?;
        let (level, id) = cgroup::level_and_id(&self.cgroup_root, &self.pod_cgroup)
            .with_context(|| format!("reading {}", self.pod_cgroup.display()))?;
        let mut uplink: Array<_, shared::UplinkConfig> = bpf::take_map(ebpf, shared::MAP_UPLINK)?;
        uplink
            .set(
                0,
                shared::UplinkConfig {
                    pod_cgroup_id: id,
                    pod_cgroup_level: level,
                    reserved: 0,
                },
                0,
            )
            .map_err(bpf::map_err(shared::MAP_UPLINK))?;
        let host_netns = config
            .host_netns
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_HOST_NETNS));
        Ok(NodeGuard::new(
            program,
            ctx.metrics.clone(),
            ctx.pins.clone(),
            host_netns,
            bpf::take_map(ebpf, shared::MAP_POD_LINKS)?,
            CgroupIndex::new(self.cgroup_root.clone(), self.pod_cgroup.clone()),
        ))
    }
}

impl Module for ImdsEnforcer {
    fn name(&self) -> &'static str {
        "imds"
    }

    fn can_run(&self) -> Result<(), String> {
        if !self.pod_cgroup.is_dir() {
            return Err(format!(
                "pod cgroup {} does not exist",
                self.pod_cgroup.display()
            ));
        }
        caps::require_bpf()
    }

    fn start(&mut self, ctx: &ModuleContext, ebpf: &mut Ebpf) -> anyhow::Result<()> {
        let config = self.config.borrow().clone();
        let pins = &ctx.pins;

        // The maps are right before any program runs, whether they are new or adopted.
        let index = CgroupIndex::new(self.cgroup_root.clone(), self.pod_cgroup.clone());
        let guard = self.node_guard(ebpf, ctx, &config)?;
        let mut reconciler = Reconciler::new(ImdsMaps::take(ebpf)?, index, Some(guard));
        reconciler.apply(&config.imds, &self.pods.borrow())?;

        let cgroup = open_cgroup(&self.pod_cgroup)?;
        let cgroup_id = std::fs::metadata(&self.pod_cgroup)
            .with_context(|| format!("reading {}", self.pod_cgroup.display()))?
            .ino();
        // Links join the cgroup's program list in multi mode (see bpf::cgroup_link).
        let attach = |name: &str, program: std::os::fd::BorrowedFd<'_>, at| {
            let how = bpf::attach_pinned(pins, name, program, cgroup_id, || {
                bpf::cgroup_link(program, cgroup.as_fd(), at)
            })?;
            info!(program = name, ?how, "attached");
            anyhow::Ok(())
        };
        for (name, at) in SOCK_ADDR_PROGRAMS {
            let program = bpf::load_program::<CgroupSockAddr>(ebpf, name)?;
            attach(name, program.fd()?.as_fd(), at)?;
        }
        // The requests for per-pod packet hooks, before the pods holding such sockets
        // already are looked for: a socket opened in between is asked for, not missed.
        let program = bpf::load_program::<CgroupSock>(ebpf, shared::PROG_SOCK_CREATE)?;
        attach(
            shared::PROG_SOCK_CREATE,
            program.fd()?.as_fd(),
            bpf_attach_type::BPF_CGROUP_INET_SOCK_CREATE,
        )?;
        let program = bpf::load_program::<CgroupSkb>(ebpf, shared::PROG_EGRESS)?
            .fd()?
            .as_fd()
            .try_clone_to_owned()
            .context("duplicating the packet hook's fd")?;
        let mut packet_guard = PacketGuard::new(
            program,
            pins.clone(),
            self.cgroup_root.clone(),
            self.pod_cgroup.clone(),
            (
                bpf::take_map(ebpf, shared::MAP_PACKET_GUARDS)?,
                bpf::take_map(ebpf, shared::MAP_PACKET_WANTED)?,
            ),
            ctx.metrics.clone(),
        );
        packet_guard.start(Path::new("/proc"))?;
        let packet_ring = bpf::ring::register(bpf::take_map(ebpf, shared::MAP_PACKET_RING)?)
            .context("the packet hook requests ring")?;
        info!(cgroup = %self.pod_cgroup.display(), pins = %config.bpf_pin_path.display(), mode = ?config.imds.mode, "IMDS enforcement active");

        let ring: RingBuf<_> = bpf::take_map(ebpf, shared::MAP_EVENTS)?;
        let stats: PerCpuArray<_, u64> = bpf::take_map(ebpf, shared::MAP_STATS)?;
        let accounts = events::Accounts::new(
            bpf::take_map(ebpf, shared::MAP_SEEN)?,
            bpf::take_map(ebpf, shared::MAP_REPORTED)?,
        );
        let ring = bpf::ring::register(ring).context("the IMDS events ring")?;
        let token = ctx.supervisor.token();
        ctx.supervisor.spawn(
            "imds-events",
            events::read(ring, accounts, ctx.events.clone(), token.clone()),
        );
        ctx.supervisor.spawn(
            "imds-losses",
            bpf::losses::watch(
                stats,
                shared::STAT_EVENTS_LOST,
                "imds",
                ctx.events.clone(),
                token.clone(),
            ),
        );
        ctx.supervisor.spawn(
            "imds-packet-guard",
            packet_guard::run(packet_guard, packet_ring, token.clone()),
        );
        ctx.supervisor.spawn(
            "imds-reconcile",
            reconciler.run(
                self.config.clone(),
                self.pods.clone(),
                ctx.events.clone(),
                token.clone(),
            ),
        );
        self.started = true;
        Ok(())
    }

    fn stop(&mut self) {
        if std::mem::take(&mut self.started) {
            info!(
                cgroup = %self.pod_cgroup.display(),
                "IMDS enforcement stays attached (pinned); `nodeward-agent uninstall` removes it"
            );
        }
    }
}
