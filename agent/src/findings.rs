//! Turns what the kernel reported into findings a person can act on: attributed to the
//! pod (with its metadata when known) and container, the process, and one sentence that
//! says what happened.

use std::net::IpAddr;

use jiff::Timestamp;
use nodeward_common::{
    AF_INET,
    imds::{HOOK_CONNECT4, HOOK_CONNECT6, HOOK_EGRESS, HOOK_NONE, ImdsEvent, VERDICT_AUDITED},
};
use nodeward_proto::model::{
    Container, Destination, Finding, Pod, Process, Protocol, Severity, Verdict,
};
use tokio::sync::watch;

use crate::{clock::BootClock, identity::CgroupIndex, pods::PodSnapshot, procinfo};

pub const RULE_IMDS_ACCESS: &str = "imds-access";
pub const RULE_EVENTS_LOST: &str = "events-lost";

/// What identifies "the same attempt" for folding repeats: container, destination,
/// protocol and verdict.
pub type ImdsRepeatKey = (u64, [u8; 16], u32, u32, u32);

pub fn imds_repeat_key(event: &ImdsEvent) -> ImdsRepeatKey {
    (
        event.cgroup_id,
        event.addr,
        event.port,
        event.protocol,
        event.verdict,
    )
}

pub struct FindingBuilder {
    index: CgroupIndex,
    clock: BootClock,
    pods: watch::Receiver<PodSnapshot>,
}

impl FindingBuilder {
    pub fn new(index: CgroupIndex, clock: BootClock, pods: watch::Receiver<PodSnapshot>) -> Self {
        Self { index, clock, pods }
    }

    /// An `imds-access` finding for `count` attempts. Reads /proc and may rescan the
    /// cgroup tree: blocking.
    pub fn imds(&mut self, event: &ImdsEvent, count: u64) -> Finding {
        let entry = self.index.lookup(event.cgroup_id).cloned();
        let identity = entry
            .as_ref()
            .map(|e| e.identity.clone())
            .unwrap_or_default();
        let pod = identity.pod_uid.as_ref().map(|uid| {
            self.pods.borrow().get(uid).map_or_else(
                || Pod {
                    uid: uid.clone(),
                    ..Pod::default()
                },
                |meta| Pod {
                    uid: uid.clone(),
                    namespace: meta.namespace.clone(),
                    name: meta.name.clone(),
                    service_account: meta.service_account.clone(),
                    host_network: meta.host_network,
                    labels: meta.labels.clone(),
                },
            )
        });
        let destination = Destination {
            address: address(event),
            port: u16::try_from(event.port).unwrap_or(0),
            protocol: Protocol::from_ip_protocol(u8::try_from(event.protocol).unwrap_or(0)),
        };
        let verdict = if event.verdict == VERDICT_AUDITED {
            Verdict::Audited
        } else {
            Verdict::Blocked
        };
        let comm = comm(&event.comm);
        let (binary, args) = procinfo::describe(event.pid);
        let who = match (&pod, &entry) {
            (Some(pod), _) if !pod.name.is_empty() => format!("pod {}/{}", pod.namespace, pod.name),
            (Some(pod), _) => format!("pod {}", pod.uid),
            (None, Some(e)) => format!("cgroup {}", e.path),
            (None, None) => format!("cgroup id {}", event.cgroup_id),
        };
        let actor = match event.hook {
            HOOK_EGRESS => format!("a raw socket in {who}"),
            HOOK_NONE => format!("processes in {who}"),
            _ => format!("{comm} (pid {}) in {who}", event.pid),
        };
        let action = match event.hook {
            HOOK_CONNECT4 | HOOK_CONNECT6 => "tried to connect to".to_owned(),
            HOOK_EGRESS => "sent a packet to".to_owned(),
            HOOK_NONE => format!("made {count} attempts to reach"),
            _ => "sent a datagram to".to_owned(),
        };
        let outcome = if verdict == Verdict::Audited {
            "allowed by audit mode"
        } else {
            "blocked"
        };
        let summary = format!(
            "{actor} {action} the instance metadata service at {} port {} ({}): {outcome}",
            destination.address, destination.port, destination.protocol
        );
        let process = (event.hook != HOOK_EGRESS && event.hook != HOOK_NONE).then_some(Process {
            pid: event.pid,
            uid: event.uid,
            comm,
            cgroup_id: event.cgroup_id,
            binary,
            args,
        });
        Finding {
            pod,
            container: identity.container_id.map(|id| Container { id }),
            process,
            destination: Some(destination),
            verdict: Some(verdict),
            count: count.max(1),
            ..Finding::new(
                RULE_IMDS_ACCESS,
                Severity::High,
                summary,
                self.clock.wall_time(event.boot_ns),
            )
        }
    }
}

/// An `events-lost` finding for `count` reports that never reached the agent.
pub fn lost(source: &str, count: u64) -> Finding {
    let summary = format!(
        "{count} {source} reports were lost before reaching the agent (kernel ring buffer full); nodeward was partly blind"
    );
    Finding {
        count,
        ..Finding::new(
            RULE_EVENTS_LOST,
            Severity::Medium,
            summary,
            Timestamp::now(),
        )
    }
}

fn address(event: &ImdsEvent) -> IpAddr {
    if event.family == AF_INET {
        IpAddr::from([event.addr[0], event.addr[1], event.addr[2], event.addr[3]])
    } else {
        IpAddr::from(event.addr)
    }
}

/// `task_struct::comm` up to its first NUL, lossily decoded.
fn comm(raw: &[u8]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

#[cfg(test)]
mod tests;
