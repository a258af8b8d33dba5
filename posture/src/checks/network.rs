//! What the kubelet exposes and how it talks to the node's network: the unauthenticated
//! read-only port, idle streaming connections, iptables chains, events, its node name.

use super::outcome::Outcome;
use super::{CheckDef, Context, Group};
use crate::config::settings::{
    EVENT_QPS, IPTABLES_UTIL_CHAINS, READ_ONLY_PORT, STREAMING_IDLE_TIMEOUT,
};
use crate::config::{Source, Value};

pub(super) const CHECKS: &[CheckDef] = &[
    CheckDef {
        id: "kubelet-read-only-port",
        title: "The kubelet's unauthenticated read-only port is disabled",
        group: Group::Kubelet,
        benchmarks: &["cis-eks-1.8.0:3.2.4", "cis-1.12:4.2.4"],
        expected: "readOnlyPort: 0 (--read-only-port=0)",
        remediation: "Set readOnlyPort: 0 in the kubelet config (or --read-only-port=0) and restart the kubelet",
        run: read_only_port,
    },
    CheckDef {
        id: "kubelet-streaming-connection-idle-timeout",
        title: "Idle streaming connections (exec, attach, port-forward) time out",
        group: Group::Kubelet,
        benchmarks: &["cis-eks-1.8.0:3.2.5", "cis-1.12:4.2.5"],
        expected: "streamingConnectionIdleTimeout not 0 (default 4h0m0s)",
        remediation: "Set streamingConnectionIdleTimeout to a non-zero duration such as 4h0m0s (or drop the 0 override) and restart the kubelet",
        run: streaming_idle_timeout,
    },
    CheckDef {
        id: "kubelet-make-iptables-util-chains",
        title: "The kubelet manages its iptables utility chains",
        group: Group::Kubelet,
        benchmarks: &["cis-eks-1.8.0:3.2.6", "cis-1.12:4.2.6"],
        expected: "makeIPTablesUtilChains: true (the default)",
        remediation: "Set makeIPTablesUtilChains: true (or remove --make-iptables-util-chains=false) and restart the kubelet",
        run: iptables_util_chains,
    },
    CheckDef {
        id: "kubelet-event-record-qps",
        title: "Event recording is not throttled away",
        group: Group::Kubelet,
        benchmarks: &["cis-eks-1.8.0:3.2.7", "cis-1.12:4.2.8"],
        expected: "eventRecordQPS >= 0 (0: unlimited; default 50)",
        remediation: "Set eventRecordQPS to 0 or a level that captures the node's events and restart the kubelet",
        run: event_qps,
    },
    CheckDef {
        id: "kubelet-hostname-override",
        title: "The kubelet does not override its hostname",
        group: Group::Kubelet,
        benchmarks: &["cis-1.12:4.2.7"],
        expected: "--hostname-override not set",
        remediation: "Remove --hostname-override from the kubelet's command line (unit file or its drop-ins) and restart the kubelet",
        run: hostname_override,
    },
];

fn read_only_port(ctx: &Context) -> Outcome {
    match ctx.int(&READ_ONLY_PORT) {
        Ok(s) => Outcome::judge(s.value == 0, ctx.describe(&s), s.source.to_string()),
        Err(e) => e,
    }
}

fn streaming_idle_timeout(ctx: &Context) -> Outcome {
    let s = match ctx.setting(&STREAMING_IDLE_TIMEOUT) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let observed = ctx.describe(&s);
    let from_file = matches!(s.source, Source::Config(_) | Source::DropIn(_));
    match s.value {
        // The kubelet defaults the decoded configuration: a zero duration in a file (kubeadm
        // writes `0s`) becomes 4h0m0s. Only a flag can really set it to 0.
        Value::Duration { nanos: 0, .. } if from_file => Outcome::pass(
            format!("{observed} in the file, which the kubelet replaces with its default 4h0m0s"),
            s.source.to_string(),
        ),
        // 0 disables the timeout: a forgotten `kubectl exec` stays open for ever.
        Value::Duration { nanos, .. } => Outcome::judge(nanos > 0, observed, s.source.to_string()),
        _ => Outcome::error(format!("unexpected value {observed}"), s.source.to_string()),
    }
}

fn iptables_util_chains(ctx: &Context) -> Outcome {
    match ctx.bool(&IPTABLES_UTIL_CHAINS) {
        Ok(s) => Outcome::judge(s.value, ctx.describe(&s), s.source.to_string()),
        Err(e) => e,
    }
}

fn event_qps(ctx: &Context) -> Outcome {
    match ctx.int(&EVENT_QPS) {
        Ok(s) => Outcome::judge(s.value >= 0, ctx.describe(&s), s.source.to_string()),
        Err(e) => e,
    }
}

fn hostname_override(ctx: &Context) -> Outcome {
    // A command-line flag only: KubeletConfiguration has no such field.
    match ctx.config.flags.last("hostname-override") {
        Some(name) => Outcome::fail(
            format!("--hostname-override={name}"),
            "flag --hostname-override",
        ),
        None => Outcome::pass("not set", "flags"),
    }
}
