//! IMDS enforcement: `cgroup/connect4` and `cgroup/connect6` programs on the pod cgroup
//! refuse connections to the blocked prefixes before any packet leaves, for every pod
//! whatever its network (hostNetwork included), and report each attempt.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{Array, LpmTrie, MapData, PerCpuArray, RingBuf, lpm_trie::Key},
    programs::CgroupAttachMode,
};
use ipnet::IpNet;
use nodeward_common::imds::{
    self as shared, ImdsConfig as KernelConfig, ImdsEvent, MODE_AUDIT, MODE_ENFORCE, MODE_OFF,
};
use tokio::{io::unix::AsyncFd, sync::mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    bpf::{self, BpfError},
    caps,
    cgroup::open_cgroup,
    config::{ImdsConfig, ImdsMode},
    event::Event,
    module::{Module, ModuleContext},
};

/// How often the kernel's lost-event counter is read.
const LOSS_POLL: Duration = Duration::from_secs(5);

pub struct ImdsEnforcer {
    config: ImdsConfig,
    pod_cgroup: PathBuf,
    /// Holds the programs and their links; dropping it detaches them.
    ebpf: Option<Ebpf>,
}

impl ImdsEnforcer {
    pub fn new(config: ImdsConfig, pod_cgroup: PathBuf) -> Self {
        Self {
            config,
            pod_cgroup,
            ebpf: None,
        }
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

    fn start(&mut self, ctx: &ModuleContext) -> anyhow::Result<()> {
        let mut ebpf = bpf::load_object()?;
        fill_blocked(&mut ebpf, &self.config.blocked_cidrs)?;
        set_mode(&mut ebpf, self.config.mode)?;

        let cgroup = open_cgroup(&self.pod_cgroup)?;
        for name in [shared::PROG_CONNECT4, shared::PROG_CONNECT6] {
            // aya attaches through bpf_link_create on kernels ≥ 5.7, and cgroup links always
            // join the cgroup's program list in multi mode (other programs, such as
            // Cilium's or systemd's, keep running). The kernel refuses explicit attach
            // flags on links with EINVAL (kernel/bpf/cgroup.c, cgroup_bpf_link_attach),
            // so `Single` (flags 0) is the mode that yields a multi attachment here.
            bpf::load_cgroup_sock_addr(&mut ebpf, name)?
                .attach(&cgroup, CgroupAttachMode::Single)
                .with_context(|| format!("attaching {name} to {}", self.pod_cgroup.display()))?;
        }
        info!(
            cgroup = %self.pod_cgroup.display(),
            mode = ?self.config.mode,
            blocked = ?self.config.blocked_cidrs,
            "IMDS enforcement attached"
        );

        let ring = RingBuf::try_from(bpf::take_map(&mut ebpf, shared::MAP_EVENTS)?)
            .map_err(bpf::map_err(shared::MAP_EVENTS))?;
        let stats = PerCpuArray::try_from(bpf::take_map(&mut ebpf, shared::MAP_STATS)?)
            .map_err(bpf::map_err(shared::MAP_STATS))?;
        // SAFETY: the RingBuf owns its map fd, which stays open and unchanged for as long
        // as the AsyncFd (which owns the RingBuf) lives.
        let ring = unsafe { AsyncFd::register(ring) }
            .map_err(|e| anyhow::Error::new(e.into_parts().1))
            .context("registering the IMDS ring buffer with tokio")?;
        let token = ctx.supervisor.token();
        ctx.supervisor.spawn(
            "imds-events",
            read_events(ring, ctx.events.clone(), token.clone()),
        );
        ctx.supervisor.spawn(
            "imds-losses",
            watch_losses(stats, ctx.events.clone(), token.clone()),
        );
        self.ebpf = Some(ebpf);
        Ok(())
    }

    fn stop(&mut self) {
        if self.ebpf.take().is_some() {
            info!(cgroup = %self.pod_cgroup.display(), "IMDS enforcement detached");
        }
    }
}

fn fill_blocked(ebpf: &mut Ebpf, cidrs: &[IpNet]) -> Result<(), BpfError> {
    let mut v4: LpmTrie<_, [u8; 4], u32> =
        LpmTrie::try_from(bpf::map_mut(ebpf, shared::MAP_BLOCKED_V4)?)
            .map_err(bpf::map_err(shared::MAP_BLOCKED_V4))?;
    for net in cidrs.iter().filter_map(|n| match n {
        IpNet::V4(n) => Some(n.trunc()),
        IpNet::V6(_) => None,
    }) {
        v4.insert(
            &Key::new(u32::from(net.prefix_len()), net.network().octets()),
            1,
            0,
        )
        .map_err(bpf::map_err(shared::MAP_BLOCKED_V4))?;
    }
    let mut v6: LpmTrie<_, [u8; 16], u32> =
        LpmTrie::try_from(bpf::map_mut(ebpf, shared::MAP_BLOCKED_V6)?)
            .map_err(bpf::map_err(shared::MAP_BLOCKED_V6))?;
    for net in cidrs.iter().filter_map(|n| match n {
        IpNet::V6(n) => Some(n.trunc()),
        IpNet::V4(_) => None,
    }) {
        v6.insert(
            &Key::new(u32::from(net.prefix_len()), net.network().octets()),
            1,
            0,
        )
        .map_err(bpf::map_err(shared::MAP_BLOCKED_V6))?;
    }
    Ok(())
}

fn set_mode(ebpf: &mut Ebpf, mode: ImdsMode) -> Result<(), BpfError> {
    let mut config: Array<_, KernelConfig> =
        Array::try_from(bpf::map_mut(ebpf, shared::MAP_CONFIG)?)
            .map_err(bpf::map_err(shared::MAP_CONFIG))?;
    let mode = match mode {
        ImdsMode::Enforce => MODE_ENFORCE,
        ImdsMode::Audit => MODE_AUDIT,
        ImdsMode::Off => MODE_OFF,
    };
    config
        .set(0, KernelConfig { mode, reserved: 0 }, 0)
        .map_err(bpf::map_err(shared::MAP_CONFIG))
}

async fn read_events(
    mut ring: AsyncFd<RingBuf<MapData>>,
    events: mpsc::Sender<Event>,
    token: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let mut guard = tokio::select! {
            () = token.cancelled() => return Ok(()),
            guard = ring.readable_mut() => guard.context("polling the IMDS ring buffer")?,
        };
        let mut batch = Vec::new();
        let reader = guard.get_inner_mut();
        while let Some(item) = reader.next() {
            if let Some(event) = parse_event(&item) {
                batch.push(event);
            } else {
                warn!(
                    len = item.len(),
                    "IMDS ring buffer record has an unexpected size"
                );
            }
        }
        guard.clear_ready();
        for event in batch {
            // Waiting here (rather than dropping) lets the ring buffer absorb a burst;
            // if it overflows, the kernel counts what it could not store.
            if events.send(Event::Imds(event)).await.is_err() {
                return Ok(());
            }
        }
    }
}

fn parse_event(bytes: &[u8]) -> Option<ImdsEvent> {
    (bytes.len() >= size_of::<ImdsEvent>()).then(|| {
        // SAFETY: the length is checked above, ImdsEvent is plain old data (any bit pattern
        // is valid), and read_unaligned makes no alignment assumption.
        unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<ImdsEvent>()) }
    })
}

async fn watch_losses(
    stats: PerCpuArray<MapData, u64>,
    events: mpsc::Sender<Event>,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let mut reported = 0u64;
    let mut tick = tokio::time::interval(LOSS_POLL);
    loop {
        tokio::select! {
            () = token.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let lost = match stats.get(&shared::STAT_EVENTS_LOST, 0) {
            Ok(per_cpu) => per_cpu.iter().sum::<u64>(),
            Err(error) => {
                debug!(%error, "reading IMDS loss counters");
                continue;
            }
        };
        if lost > reported {
            warn!(
                lost = lost - reported,
                "IMDS events lost in the kernel: ring buffer full"
            );
            if events
                .send(Event::Lost {
                    source: "imds",
                    count: lost - reported,
                })
                .await
                .is_err()
            {
                return Ok(());
            }
            reported = lost;
        }
    }
}

/// The address an event's bytes describe.
pub fn event_address(event: &ImdsEvent) -> IpAddr {
    if event.family == nodeward_common::AF_INET {
        IpAddr::from([event.addr[0], event.addr[1], event.addr[2], event.addr[3]])
    } else {
        IpAddr::from(event.addr)
    }
}
