//! The egress sensor: the IMDS programs also record every destination pods connect or send
//! to (deduplicated in the kernel); this switches that on and reads what they report.

use aya::{
    Ebpf,
    maps::{Array, PerCpuArray, RingBuf},
};
use nodeward_common::egress::{self as shared, EgressEvent, EgressKey};
use tracing::info;

use crate::{
    bpf,
    event::Event,
    module::{Module, ModuleContext},
};

/// One report: a container reached a destination (again), `total` times so far.
#[derive(Debug, Clone, Copy)]
pub struct EgressInfo {
    pub key: EgressKey,
    pub raw: EgressEvent,
}

pub struct EgressSensor;

impl Module for EgressSensor {
    fn name(&self) -> &'static str {
        "egress"
    }

    fn can_run(&self) -> Result<(), String> {
        crate::caps::require_bpf()
    }

    fn start(&mut self, ctx: &ModuleContext, ebpf: &mut Ebpf) -> anyhow::Result<()> {
        let mut config: Array<_, u32> = bpf::take_map(ebpf, shared::MAP_CONFIG)?;
        config
            .set(0, 1, 0)
            .map_err(bpf::map_err(shared::MAP_CONFIG))?;
        let ring: RingBuf<_> = bpf::take_map(ebpf, shared::MAP_EVENTS)?;
        let stats: PerCpuArray<_, u64> = bpf::take_map(ebpf, shared::MAP_STATS)?;
        info!("egress sensor on");
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
