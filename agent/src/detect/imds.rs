//! `imds-access` findings: what the IMDS programs refused (or, in audit mode, let through),
//! attributed like every other finding.

use std::net::IpAddr;

use nodeward_common::{
    AF_INET,
    imds::{
        HOOK_CONNECT4, HOOK_CONNECT6, HOOK_EGRESS, HOOK_FORWARDED, HOOK_NONE, HOOK_UPLINK,
        ImdsEvent, VERDICT_AUDITED,
    },
};
use nodeward_proto::model::{
    Category, Container, Destination, Finding, Process, Protocol, Severity, Verdict,
};

use super::{Detector, finding};
use crate::procinfo;

pub const RULE_IMDS_ACCESS: &str = "imds-access";
/// MITRE ATT&CK: Unsecured Credentials: Cloud Instance Metadata API.
const TECHNIQUE: &str = "T1552.005";

/// What identifies "the same attempt" for folding repeats: container, destination,
/// protocol and verdict.
pub type ImdsRepeatKey = (u64, [u8; 16], u32, u32, u32);

pub fn repeat_key(event: &ImdsEvent) -> ImdsRepeatKey {
    (
        event.cgroup_id,
        event.addr,
        event.port,
        event.protocol,
        event.verdict,
    )
}

impl Detector {
    /// An `imds-access` finding for `count` attempts. May walk the cgroup tree and read
    /// /proc: blocking.
    pub fn imds(&mut self, event: &ImdsEvent, count: u64) -> Finding {
        let entry = self.index.lookup(event.cgroup_id).cloned();
        let identity = entry
            .as_ref()
            .map(|e| e.identity.clone())
            .unwrap_or_default();
        let snapshot = self.pods.borrow().clone();
        let meta = identity.pod_uid.as_ref().and_then(|uid| snapshot.get(uid));
        let pod = finding::pod(&identity, meta);
        let container_meta = meta.and_then(|m| {
            m.containers
                .iter()
                .find(|c| Some(&c.id) == identity.container_id.as_ref())
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
        let comm = crate::findings::comm(&event.comm);
        // The exec sensor remembers what ran; /proc only knows processes still alive.
        // Packets carry no trustworthy process: egress runs wherever the packet happens
        // to be sent from, a forwarded one has left its sender's namespace.
        let from_process = !matches!(
            event.hook,
            HOOK_EGRESS | HOOK_FORWARDED | HOOK_UPLINK | HOOK_NONE
        );
        let process = from_process.then(|| {
            if let Some(exec) = self.processes.get(event.pid) {
                Process {
                    uid: event.uid,
                    ..finding::process(exec)
                }
            } else {
                let (binary, args) = procinfo::describe(event.pid);
                Process {
                    pid: event.pid,
                    uid: event.uid,
                    comm: comm.clone(),
                    cgroup_id: event.cgroup_id,
                    binary,
                    args,
                    ..Process::default()
                }
            }
        });
        let parent = process
            .as_ref()
            .and_then(|p| self.processes.get(p.ppid))
            .map(|p| finding::process(p));
        let who = match (&pod, meta, &entry) {
            (Some(_), Some(meta), _) => format!("pod {}/{}", meta.namespace, meta.name),
            (Some(pod), None, _) => format!("pod {}", pod.uid),
            (None, _, Some(e)) => format!("cgroup {}", e.path),
            (None, _, None) => format!("cgroup id {}", event.cgroup_id),
        };
        let (actor, action) = attempt(event, &who, &comm, count);
        let outcome = if verdict == Verdict::Audited {
            "allowed by audit mode"
        } else {
            "blocked"
        };
        let summary = format!(
            "{actor} {action} the instance metadata service at {} port {} ({}): {outcome}",
            destination.address, destination.port, destination.protocol
        );
        Finding {
            pod,
            container: identity.container_id.map(|id| Container {
                id,
                name: container_meta.map(|c| c.name.clone()).unwrap_or_default(),
                image: container_meta.map(|c| c.image.clone()).unwrap_or_default(),
            }),
            process,
            parent,
            destination: Some(destination),
            verdict: Some(verdict),
            count: count.max(1),
            category: Category::Enforcement,
            techniques: vec![TECHNIQUE.to_owned()],
            ..Finding::new(
                RULE_IMDS_ACCESS,
                Severity::High,
                summary,
                self.clock.wall_time(event.boot_ns),
            )
        }
    }
}

/// Who made the attempt and what they did, in words.
fn attempt(event: &ImdsEvent, who: &str, comm: &str, count: u64) -> (String, String) {
    let actor = match event.hook {
        HOOK_EGRESS => format!("a raw socket in {who}"),
        HOOK_UPLINK => format!("a raw or packet socket in {who}"),
        HOOK_FORWARDED if event.cgroup_id == 0 => format!(
            "a packet forwarded from node interface {}, where no known pod is,",
            event.ifindex
        ),
        HOOK_FORWARDED => format!("{who}, through node interface {},", event.ifindex),
        HOOK_NONE => format!("processes in {who}"),
        _ => format!("{comm} (pid {}) in {who}", event.pid),
    };
    let action = match event.hook {
        HOOK_CONNECT4 | HOOK_CONNECT6 => "tried to connect to".to_owned(),
        HOOK_EGRESS | HOOK_UPLINK | HOOK_FORWARDED => "sent a packet to".to_owned(),
        HOOK_NONE => format!("made {count} attempts to reach"),
        _ => "sent a datagram to".to_owned(),
    };
    (actor, action)
}

fn address(event: &ImdsEvent) -> IpAddr {
    if event.family == AF_INET {
        IpAddr::from([event.addr[0], event.addr[1], event.addr[2], event.addr[3]])
    } else {
        IpAddr::from(event.addr)
    }
}
