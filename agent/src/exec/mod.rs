//! The exec sensor: a BTF tracepoint on `sched_process_exec` reports every exec below the
//! pod cgroup (or on the whole node), with binary path, argv, parent and terminal. The
//! kernel struct offsets it needs come from the running kernel's BTF, looked up here.

mod event;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{Array, PerCpuArray, RingBuf},
    programs::BtfTracePoint,
};
use nodeward_common::exec::{self as shared, CONFIG_HOST_PROCESSES, ExecConfig};
use tracing::info;

pub use self::event::ExecInfo;
use crate::{
    bpf,
    btf::{self, Btf},
    caps, cgroup,
    event::Event,
    module::{Module, ModuleContext},
};

pub struct ExecSensor {
    cgroup_root: PathBuf,
    pod_cgroup: PathBuf,
    host_processes: bool,
}

impl ExecSensor {
    pub fn new(cgroup_root: PathBuf, pod_cgroup: PathBuf, host_processes: bool) -> Self {
        Self {
            cgroup_root,
            pod_cgroup,
            host_processes,
        }
    }

    /// The program's settings: where the pods are, and this kernel's struct offsets.
    fn kernel_config(&self) -> anyhow::Result<ExecConfig> {
        let btf = Btf::load(Path::new(btf::VMLINUX))?;
        let offset = |s: &str, m: &str| btf.member_offset(s, m);
        let (pod_cgroup_level, pod_cgroup_id) =
            cgroup::level_and_id(&self.cgroup_root, &self.pod_cgroup)
                .with_context(|| format!("reading {}", self.pod_cgroup.display()))?;
        Ok(ExecConfig {
            pod_cgroup_id,
            pod_cgroup_level,
            flags: if self.host_processes {
                CONFIG_HOST_PROCESSES
            } else {
                0
            },
            task_mm: offset("task_struct", "mm")?,
            task_real_parent: offset("task_struct", "real_parent")?,
            task_tgid: offset("task_struct", "tgid")?,
            task_signal: offset("task_struct", "signal")?,
            signal_tty: offset("signal_struct", "tty")?,
            mm_arg_start: offset("mm_struct", "arg_start")?,
            mm_arg_end: offset("mm_struct", "arg_end")?,
            bprm_filename: offset("linux_binprm", "filename")?,
        })
    }
}

impl Module for ExecSensor {
    fn name(&self) -> &'static str {
        "exec"
    }

    fn can_run(&self) -> Result<(), String> {
        if !Path::new(btf::VMLINUX).is_file() {
            return Err(format!(
                "{} is missing: the kernel has no BTF (CONFIG_DEBUG_INFO_BTF)",
                btf::VMLINUX
            ));
        }
        caps::require_bpf()
    }

    fn start(&mut self, ctx: &ModuleContext, ebpf: &mut Ebpf) -> anyhow::Result<()> {
        let config = self.kernel_config()?;
        let mut config_map: Array<_, ExecConfig> = bpf::take_map(ebpf, shared::MAP_CONFIG)?;
        config_map
            .set(0, config, 0)
            .map_err(bpf::map_err(shared::MAP_CONFIG))?;

        let kernel_btf =
            aya::Btf::from_sys_fs().context("reading the kernel's BTF for the tracepoint")?;
        let program: &mut BtfTracePoint = ebpf
            .program_mut(shared::PROG_EXEC)
            .ok_or(bpf::BpfError::MissingProgram(shared::PROG_EXEC))?
            .try_into()?;
        program
            .load("sched_process_exec", &kernel_btf)
            .map_err(|source| bpf::BpfError::Load {
                name: shared::PROG_EXEC,
                source,
            })?;
        program
            .attach()
            .context("attaching the exec sensor to sched_process_exec")?;
        info!(
            scope = if self.host_processes { "node" } else { "pods" },
            "exec sensor attached"
        );

        let ring: RingBuf<_> = bpf::take_map(ebpf, shared::MAP_EVENTS)?;
        let stats: PerCpuArray<_, u64> = bpf::take_map(ebpf, shared::MAP_STATS)?;
        let token = ctx.supervisor.token();
        ctx.supervisor.spawn(
            "exec-events",
            bpf::ring::forward(
                bpf::ring::register(ring)?,
                "exec",
                |bytes| ExecInfo::parse(bytes).map(|info| Event::Exec(Box::new(info))),
                ctx.events.clone(),
                token.clone(),
            ),
        );
        ctx.supervisor.spawn(
            "exec-losses",
            bpf::losses::watch(
                stats,
                shared::STAT_EVENTS_LOST,
                "exec",
                ctx.events.clone(),
                token.clone(),
            ),
        );
        Ok(())
    }

    fn stop(&mut self) {}
}
