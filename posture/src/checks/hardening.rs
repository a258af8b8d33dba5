//! How the kubelet protects the node from its pods: PID limits, the default seccomp
//! profile, and refusing to run with kernel settings it would otherwise change.

use super::outcome::Outcome;
use super::{CheckDef, Context, Group};
use crate::config::settings::{POD_PIDS_LIMIT, PROTECT_KERNEL_DEFAULTS, SECCOMP_DEFAULT};

pub(super) const CHECKS: &[CheckDef] = &[
    CheckDef {
        id: "kubelet-pod-pids-limit",
        title: "Pods have a PID limit",
        group: Group::Kubelet,
        benchmarks: &["cis-1.12:4.2.13"],
        expected: "podPidsLimit > 0 (--pod-max-pids)",
        remediation: "Set podPidsLimit (or --pod-max-pids) to a limit suited to the node's workloads, e.g. 4096, and restart the kubelet",
        run: pod_pids_limit,
    },
    CheckDef {
        id: "kubelet-seccomp-default",
        title: "Containers get the RuntimeDefault seccomp profile by default",
        group: Group::Kubelet,
        benchmarks: &["cis-1.12:4.2.14"],
        expected: "seccompDefault: true (--seccomp-default)",
        remediation: "Set seccompDefault: true in the kubelet config (or --seccomp-default) and restart the kubelet",
        run: seccomp_default,
    },
    CheckDef {
        id: "kubelet-protect-kernel-defaults",
        title: "The kubelet refuses kernel settings that differ from its defaults",
        group: Group::Kubelet,
        benchmarks: &[],
        expected: "protectKernelDefaults: true (--protect-kernel-defaults)",
        remediation: "Set the kernel parameters the kubelet needs (vm.overcommit_memory=1, kernel.panic=10, kernel.panic_on_oops=1) with sysctl, then protectKernelDefaults: true, and restart the kubelet",
        run: protect_kernel_defaults,
    },
];

fn pod_pids_limit(ctx: &Context) -> Outcome {
    match ctx.int(&POD_PIDS_LIMIT) {
        // -1 and 0 both mean "no limit": one pod can fork-bomb the node.
        Ok(s) => Outcome::judge(s.value > 0, ctx.describe(&s), s.source.to_string()),
        Err(e) => e,
    }
}

fn seccomp_default(ctx: &Context) -> Outcome {
    match ctx.bool(&SECCOMP_DEFAULT) {
        Ok(s) => Outcome::judge(s.value, ctx.describe(&s), s.source.to_string()),
        Err(e) => e,
    }
}

fn protect_kernel_defaults(ctx: &Context) -> Outcome {
    match ctx.bool(&PROTECT_KERNEL_DEFAULTS) {
        Ok(s) => Outcome::judge(s.value, ctx.describe(&s), s.source.to_string()),
        Err(e) => e,
    }
}
