//! The egress sensor: the IMDS programs also record every destination pods connect or send
//! to (deduplicated in the kernel); this switches that on and reads what they report.
//! With `sensors.hostProcesses`, record-only programs on the node's cgroup (the cgroup2
//! root in production) add node processes; they are not pinned, so they leave with the
//! agent, and they skip tasks below the pod cgroup, which the pod programs record.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{Array, PerCpuArray, RingBuf},
    programs::{CgroupAttachMode, CgroupSockAddr},
};
use nodeward_common::egress::{self as shared, EgressConfig, EgressEvent, EgressKey};
use tracing::info;

use crate::{
    bpf, cgroup,
    event::Event,
    module::{Module, ModuleContext},
};

/// The record-only programs for node processes.
const HOST_PROGRAMS: [&str; 4] = [
    shared::PROG_HOST_CONNECT4,
    shared::PROG_HOST_CONNECT6,
    shared::PROG_HOST_SENDMSG4,
    shared::PROG_HOST_SENDMSG6,
];

/// One report: a container reached a destination (again), `total` times so far.
#[derive(Debug, Clone, Copy)]
pub struct EgressInfo {
    pub key: EgressKey,
    pub raw: EgressEvent,
}

pub struct EgressSensor {
    cgroup_root: PathBuf,
    pod_cgroup: PathBuf,
    /// Where node processes are watched from, when they are.
    host_cgroup: Option<PathBuf>,
}

impl EgressSensor {
    pub fn new(cgroup_root: PathBuf, pod_cgroup: PathBuf, host_cgroup: Option<PathBuf>) -> Self {
        Self {
            cgroup_root,
            pod_cgroup,
            host_cgroup,
        }
    }

    fn kernel_config(&self) -> anyhow::Result<EgressConfig> {
        let (pod_cgroup_level, pod_cgroup_id) =
            cgroup::level_and_id(&self.cgroup_root, &self.pod_cgroup)
                .with_context(|| format!("reading {}", self.pod_cgroup.display()))?;
        Ok(EgressConfig {
            enabled: 1,
            pod_cgroup_level,
            pod_cgroup_id,
        })
    }

    fn attach_host_programs(ebpf: &mut Ebpf, host_cgroup: &Path) -> anyhow::Result<()> {
        let cgroup = cgroup::open_cgroup(host_cgroup)?;
        for name in HOST_PROGRAMS {
            let program = bpf::load_program::<CgroupSockAddr>(ebpf, name)?;
            // The link stays with the program in `ebpf`, which lives as long as the agent;
            // `Single` yields a multi attachment for links (see imds/mod.rs).
            program
                .attach(&cgroup, CgroupAttachMode::Single)
                .with_context(|| format!("attaching {name} to {}", host_cgroup.display()))?;
        }
        Ok(())
    }
}

impl Module for EgressSensor {
    fn name(&self) -> &'static str {
        "egress"
    }

    fn can_run(&self) -> Result<(), String> {
        if let Some(host) = &self.host_cgroup
            && !host.join("cgroup.procs").is_file()
        {
            return Err(format!(
                "{} (sensors.hostCgroupPath) is not a cgroup2 directory",
                host.display()
            ));
        }
        crate::caps::require_bpf()
    }

    fn start(&mut self, ctx: &ModuleContext, ebpf: &mut Ebpf) -> anyhow::Result<()> {
        let mut config: Array<_, EgressConfig> = bpf::take_map(ebpf, shared::MAP_CONFIG)?;
        config
            .set(0, self.kernel_config()?, 0)
            .map_err(bpf::map_err(shared::MAP_CONFIG))?;
        if let Some(host) = &self.host_cgroup {
            Self::attach_host_programs(ebpf, host)?;
        }
        let ring: RingBuf<_> = bpf::take_map(ebpf, shared::MAP_EVENTS)?;
        let stats: PerCpuArray<_, u64> = bpf::take_map(ebpf, shared::MAP_STATS)?;
        info!(
            scope = if self.host_cgroup.is_some() {
                "node"
            } else {
                "pods"
            },
            "egress sensor on"
        );
        let token = ctx.supervisor.token();
        ctx.supervisor.spawn(
            "egress-events",
            bpf::ring::forward(
                bpf::ring::register(ring)?,
                "egress",
                |bytes| {
                    bpf::ring::read_record::<EgressEvent>(bytes)
                        .map(|raw| Event::Egress(EgressInfo::from(raw)))
                },
                ctx.events.clone(),
                token.clone(),
            ),
        );
        ctx.supervisor.spawn(
            "egress-losses",
            bpf::losses::watch(
                stats,
                shared::STAT_EVENTS_LOST,
                "egress",
                ctx.events.clone(),
                token.clone(),
            ),
        );
        Ok(())
    }

    fn stop(&mut self) {}
}

impl From<EgressEvent> for EgressInfo {
    fn from(raw: EgressEvent) -> Self {
        let key = EgressKey {
            cgroup_id: raw.cgroup_id,
            addr: raw.addr,
            family: raw.family,
            protocol: raw.protocol,
            port: raw.port,
            reserved: 0,
        };
        Self { key, raw }
    }
}
