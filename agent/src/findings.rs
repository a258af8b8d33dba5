//! Turns what the kernel reported into findings a person can act on: attributes each to
//! its pod and container and says in one sentence what happened.

use jiff::Timestamp;
use nodeward_common::imds::{ImdsEvent, VERDICT_AUDITED};
use nodeward_proto::model::{
    Container, Destination, Finding, Pod, Process, Protocol, Severity, Verdict,
};

use crate::{clock::BootClock, event::Event, identity::CgroupIndex, imds::event_address};

pub const RULE_IMDS_ACCESS: &str = "imds-access";
pub const RULE_EVENTS_LOST: &str = "events-lost";

pub struct FindingBuilder {
    index: CgroupIndex,
    clock: BootClock,
}

impl FindingBuilder {
    pub fn new(index: CgroupIndex, clock: BootClock) -> Self {
        Self { index, clock }
    }

    pub fn build(&mut self, event: &Event) -> Finding {
        match event {
            Event::Imds(event) => self.imds(event),
            Event::Lost { source, count } => lost(source, *count),
        }
    }

    fn imds(&mut self, event: &ImdsEvent) -> Finding {
        let entry = self.index.lookup(event.cgroup_id).cloned();
        let identity = entry
            .as_ref()
            .map(|e| e.identity.clone())
            .unwrap_or_default();
        let destination = Destination {
            address: event_address(event),
            port: u16::try_from(event.port).unwrap_or(0),
            protocol: Protocol::from_ip_protocol(u8::try_from(event.protocol).unwrap_or(0)),
        };
        let verdict = if event.verdict == VERDICT_AUDITED {
            Verdict::Audited
        } else {
            Verdict::Blocked
        };
        let comm = comm(&event.comm);
        let who = match (&identity.pod_uid, &entry) {
            (Some(uid), _) => format!("pod {uid}"),
            (None, Some(e)) => format!("cgroup {}", e.path),
            (None, None) => format!("cgroup id {}", event.cgroup_id),
        };
        let outcome = match verdict {
            Verdict::Audited => "allowed by audit mode",
            _ => "blocked",
        };
        Finding {
            seq: 0,
            time: self.clock.wall_time(event.boot_ns),
            rule_id: RULE_IMDS_ACCESS.into(),
            severity: Severity::High,
            summary: format!(
                "{comm} (pid {}) in {who} tried to reach the instance metadata service at {} port {} ({}): {outcome}",
                event.pid, destination.address, destination.port, destination.protocol
            ),
            pod: identity.pod_uid.map(|uid| Pod {
                uid,
                ..Pod::default()
            }),
            container: identity.container_id.map(|id| Container { id }),
            process: Some(Process {
                pid: event.pid,
                uid: event.uid,
                comm,
                cgroup_id: event.cgroup_id,
            }),
            destination: Some(destination),
            verdict: Some(verdict),
        }
    }
}

fn lost(source: &str, count: u64) -> Finding {
    let summary = format!(
        "{count} {source} events were lost before reaching the agent (kernel ring buffer full); nodeward was partly blind"
    );
    Finding::new(
        RULE_EVENTS_LOST,
        Severity::Medium,
        summary,
        Timestamp::now(),
    )
}

/// `task_struct::comm` up to its first NUL, lossily decoded.
fn comm(raw: &[u8]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use std::{os::unix::fs::MetadataExt as _, path::PathBuf};

    use nodeward_common::{AF_INET6, imds::VERDICT_BLOCKED};

    use super::*;

    const UID: &str = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";

    fn event(cgroup_id: u64) -> ImdsEvent {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"curl");
        ImdsEvent {
            cgroup_id,
            boot_ns: 1,
            pid: 4242,
            uid: 0,
            family: AF_INET6,
            protocol: 6,
            port: 80,
            verdict: VERDICT_BLOCKED,
            hook: 2,
            reserved: 0,
            addr: "fd00:ec2::254"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
            comm,
        }
    }

    #[test]
    fn imds_attempt_names_pod_container_and_destination() {
        let root = tempfile::tempdir().unwrap();
        let cid = "ab".repeat(32);
        let dir = root
            .path()
            .join(format!("kubepods/besteffort/pod{UID}/{cid}"));
        std::fs::create_dir_all(&dir).unwrap();
        let index = CgroupIndex::new(root.path().to_owned(), root.path().join("kubepods"));
        let mut builder = FindingBuilder::new(index, BootClock::new());

        let finding = builder.build(&Event::Imds(event(std::fs::metadata(&dir).unwrap().ino())));
        assert_eq!(finding.rule_id, "imds-access");
        assert_eq!(finding.severity, Severity::High);
        assert_eq!(finding.pod.unwrap().uid, UID);
        assert_eq!(finding.container.unwrap().id, cid);
        assert_eq!(finding.verdict, Some(Verdict::Blocked));
        let dst = finding.destination.unwrap();
        assert_eq!(dst.address.to_string(), "fd00:ec2::254");
        assert_eq!((dst.port, dst.protocol), (80, Protocol::Tcp));
        assert_eq!(finding.process.unwrap().comm, "curl");
        assert!(
            finding.summary.contains(UID) && finding.summary.contains("blocked"),
            "{}",
            finding.summary
        );
    }

    #[test]
    fn unknown_cgroup_is_still_reported() {
        let mut builder = FindingBuilder::new(
            CgroupIndex::new(
                PathBuf::from("/nonexistent"),
                PathBuf::from("/nonexistent/kubepods"),
            ),
            BootClock::new(),
        );
        let finding = builder.build(&Event::Imds(event(77)));
        assert!(finding.pod.is_none());
        assert!(
            finding.summary.contains("cgroup id 77"),
            "{}",
            finding.summary
        );
    }

    #[test]
    fn losses_become_findings() {
        let mut builder = FindingBuilder::new(
            CgroupIndex::new(PathBuf::from("/x"), PathBuf::from("/x/y")),
            BootClock::new(),
        );
        let finding = builder.build(&Event::Lost {
            source: "imds",
            count: 12,
        });
        assert_eq!(finding.rule_id, "events-lost");
        assert!(
            finding.summary.starts_with("12 imds events"),
            "{}",
            finding.summary
        );
    }
}
