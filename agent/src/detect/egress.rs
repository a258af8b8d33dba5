//! Judging destinations pods reached, by the egress rules (miner pools, custom rules).

use std::{net::IpAddr, time::Instant};

use nodeward_common::AF_INET;
use nodeward_proto::model::{Container, Destination, Finding, Protocol};

use super::{Detector, Held, finding};
use crate::{
    egress::EgressInfo,
    rules::{
        Subject,
        spec::{ProtocolName, Trigger},
    },
};

/// Destinations whose totals are remembered; past this the memory starts over (the next
/// report of each then counts its whole total, an overcount at worst).
const MAX_TOTALS: usize = 65_536;

impl Detector {
    /// Takes an egress report; returns the findings to report now.
    pub fn on_egress(&mut self, mut egress: EgressInfo, now: Instant) -> Vec<Finding> {
        if self.egress_totals.len() >= MAX_TOTALS {
            self.egress_totals.clear();
        }
        let before = self
            .egress_totals
            .insert(egress.key, egress.raw.total)
            .unwrap_or(0);
        // A total below the last one means the kernel forgot the key and started again.
        egress.raw.total = if egress.raw.total >= before {
            egress.raw.total - before
        } else {
            egress.raw.total
        };
        if egress.raw.total == 0 || !self.rules.watches(Trigger::Egress) {
            return Vec::new();
        }
        self.hold_or_judge(Held::Egress(egress), now)
    }

    /// `egress.raw.total` holds the attempts this report stands for.
    pub(super) fn judge_egress(&mut self, egress: &EgressInfo, now: Instant) -> Vec<Finding> {
        let raw = &egress.raw;
        let entry = self.index.lookup(raw.cgroup_id).cloned();
        let identity = entry.map(|e| e.identity).unwrap_or_default();
        let snapshot = self.pods.borrow().clone();
        let meta = identity.pod_uid.as_ref().and_then(|uid| snapshot.get(uid));
        let container = meta.and_then(|m| {
            m.containers
                .iter()
                .find(|c| Some(&c.id) == identity.container_id.as_ref())
        });
        let address = if raw.family == AF_INET {
            IpAddr::from([raw.addr[0], raw.addr[1], raw.addr[2], raw.addr[3]])
        } else {
            IpAddr::from(raw.addr)
        };
        let protocol = Protocol::from_ip_protocol(u8::try_from(raw.protocol).unwrap_or(0));
        let port = u16::try_from(raw.port).unwrap_or(0);
        let rule_protocol = match protocol {
            Protocol::Tcp => ProtocolName::Tcp,
            Protocol::Udp => ProtocolName::Udp,
            Protocol::Other(_) => return Vec::new(),
        };
        let process = self.processes.get(raw.pid).cloned();
        let parent = process
            .as_ref()
            .and_then(|p| self.processes.get(p.ppid))
            .cloned();
        let subject = Subject {
            binary: process.as_ref().map(|p| p.binary.as_str()),
            parent_binary: parent.as_ref().map(|p| p.binary.as_str()),
            namespace: meta.map(|m| m.namespace.as_str()),
            labels: meta.map(|m| &m.labels),
            image: container.map(|c| c.image.as_str()),
            destination: Some((address, port, rule_protocol)),
            ..Subject::default()
        };
        let time = self.clock.wall_time(raw.boot_ns);
        let comm = crate::findings::comm(&raw.comm);
        let mut out = Vec::new();
        for rule in self.rules.evaluate(Trigger::Egress, &subject) {
            let who = match meta {
                Some(meta) => format!("pod {}/{}", meta.namespace, meta.name),
                None => identity
                    .pod_uid
                    .as_ref()
                    .map_or_else(|| "a node process".to_owned(), |uid| format!("pod {uid}")),
            };
            let summary = format!(
                "{}: {comm} (pid {}) in {who} connected to {address} port {port} ({protocol})",
                rule.title, raw.pid
            );
            let mut found = Finding {
                pod: finding::pod(&identity, meta),
                container: identity.container_id.as_ref().map(|id| Container {
                    id: id.clone(),
                    name: container.map(|c| c.name.clone()).unwrap_or_default(),
                    image: container.map(|c| c.image.clone()).unwrap_or_default(),
                }),
                process: process.as_deref().map(finding::process),
                parent: parent.as_deref().map(finding::process),
                destination: Some(Destination {
                    address,
                    port,
                    protocol,
                }),
                count: raw.total,
                category: nodeward_proto::model::Category::Runtime,
                techniques: rule.techniques.clone(),
                description: rule.description.clone(),
                first_seen: Some(time),
                last_seen: Some(time),
                ..Finding::new(rule.id.clone(), rule.severity, summary, time)
            };
            if found.process.is_none() {
                found.process = Some(nodeward_proto::model::Process {
                    pid: raw.pid,
                    uid: raw.uid,
                    comm: comm.clone(),
                    cgroup_id: raw.cgroup_id,
                    ..Default::default()
                });
            }
            let key = (rule.id.clone(), raw.cgroup_id, format!("{address}:{port}"));
            out.extend(self.repeats.admit(key, found, now));
        }
        out
    }
}
