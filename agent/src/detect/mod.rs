//! Runtime detection: every exec (and, with the egress sensor, every new destination) is
//! put together with what is known of its pod and process and judged by the rules.
//!
//! A pod's metadata can trail its first processes (the API watch has not delivered it
//! yet), and rules may depend on it (namespace, labels, image), so an event from a pod
//! whose UID is known but whose metadata is not is held for a moment; if the metadata is
//! still missing then, it is judged without, and its findings say `identityPending`.

mod egress;
mod finding;
pub mod imds;
mod pending;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use nodeward_common::egress::EgressKey;
use nodeward_proto::model::Finding;
use tokio::sync::watch;

use self::pending::Pending;
use crate::{
    clock::BootClock,
    egress::EgressInfo,
    exec::ExecInfo,
    identity::CgroupIndex,
    pods::{PodMeta, PodSnapshot},
    process_table::ProcessTable,
    repeats::Repeats,
    rules::{RuleSet, Subject, spec::Trigger},
};

/// How long an event waits for its pod's metadata.
pub const IDENTITY_HOLD: Duration = Duration::from_secs(2);

/// Repeats of one rule, by one binary, in one container.
type RepeatKey = (String, u64, String);

pub struct Detector {
    rules: RuleSet,
    index: CgroupIndex,
    pods: watch::Receiver<PodSnapshot>,
    /// Whether pod metadata can arrive at all (a pods file or the API); without a source
    /// nothing is held.
    pod_source: bool,
    clock: BootClock,
    processes: ProcessTable,
    pending: Pending<Held>,
    repeats: Repeats<RepeatKey>,
    /// The last attempt total seen per destination, to turn totals into counts.
    egress_totals: HashMap<EgressKey, u64>,
}

/// An event waiting for its pod's metadata.
enum Held {
    Exec(Arc<ExecInfo>),
    Egress(EgressInfo),
}

impl Held {
    fn cgroup_id(&self) -> u64 {
        match self {
            Self::Exec(exec) => exec.cgroup_id,
            Self::Egress(egress) => egress.key.cgroup_id,
        }
    }
}

impl Detector {
    pub fn new(
        rules: RuleSet,
        index: CgroupIndex,
        pods: watch::Receiver<PodSnapshot>,
        pod_source: bool,
        repeat_window: Duration,
    ) -> Self {
        Self {
            rules,
            index,
            pods,
            pod_source,
            clock: BootClock::new(),
            processes: ProcessTable::default(),
            pending: Pending::default(),
            repeats: Repeats::new(repeat_window),
            egress_totals: HashMap::new(),
        }
    }

    /// Replaces the rules (a config change); nothing in flight is lost.
    pub fn set_rules(&mut self, rules: RuleSet) {
        self.rules = rules;
    }

    /// Takes an exec; returns the findings to report now. May walk the cgroup tree and
    /// read /proc: blocking.
    pub fn on_exec(&mut self, exec: ExecInfo, now: Instant) -> Vec<Finding> {
        let exec = Arc::new(exec);
        self.processes.record(Arc::clone(&exec));
        if !self.rules.watches(Trigger::Exec) {
            return Vec::new();
        }
        self.hold_or_judge(Held::Exec(exec), now)
    }

    /// Holds an event whose pod is known by UID only (while metadata can still come), or
    /// judges it now.
    fn hold_or_judge(&mut self, event: Held, now: Instant) -> Vec<Finding> {
        let uid = self
            .index
            .lookup(event.cgroup_id())
            .and_then(|e| e.identity.pod_uid.clone());
        if self.pod_source && uid.is_some_and(|uid| !self.pods.borrow().contains_key(&uid)) {
            let overflow = self.pending.hold(event, now + IDENTITY_HOLD);
            return overflow
                .into_iter()
                .flat_map(|e| self.judge(e, now))
                .collect();
        }
        self.judge(event, now)
    }

    fn judge(&mut self, event: Held, now: Instant) -> Vec<Finding> {
        match event {
            Held::Exec(exec) => self.judge_exec(&exec, now),
            Held::Egress(egress) => self.judge_egress(&egress, now),
        }
    }

    /// Judges held events whose metadata has arrived or whose time is up, and closes repeat
    /// windows; call on every tick and whenever pod metadata changes.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Finding> {
        let snapshot = self.pods.borrow().clone();
        let ready = self.pending.release(now, |held| {
            let uid = self
                .index
                .lookup(held.cgroup_id())
                .and_then(|e| e.identity.pod_uid.clone());
            uid.is_none_or(|uid| snapshot.contains_key(&uid))
        });
        let mut findings: Vec<Finding> =
            ready.into_iter().flat_map(|e| self.judge(e, now)).collect();
        findings.extend(self.repeats.due(now));
        findings
    }

    /// Everything still held or pending, judged now (at shutdown).
    pub fn drain(&mut self, now: Instant) -> Vec<Finding> {
        let held = self.pending.release(now + IDENTITY_HOLD * 2, |_| true);
        let mut findings: Vec<Finding> =
            held.into_iter().flat_map(|e| self.judge(e, now)).collect();
        findings.extend(self.repeats.drain());
        findings
    }

    fn judge_exec(&mut self, exec: &ExecInfo, now: Instant) -> Vec<Finding> {
        let entry = self.index.lookup(exec.cgroup_id).cloned();
        let identity = entry.map(|e| e.identity).unwrap_or_default();
        let snapshot = self.pods.borrow().clone();
        let meta: Option<&PodMeta> = identity.pod_uid.as_ref().and_then(|uid| snapshot.get(uid));
        let container = meta.and_then(|m| {
            let id = identity.container_id.as_deref()?;
            m.containers.iter().find(|c| c.id == id)
        });
        let parent = self.processes.get(exec.ppid).cloned();
        let parent_binary = parent
            .as_ref()
            .map(|p| p.binary.clone())
            .or_else(|| crate::procinfo::describe(exec.ppid).0.into());
        let args = exec.args.join(" ");
        let subject = Subject {
            binary: Some(&exec.binary),
            args: Some(&args),
            tty: Some(exec.tty),
            parent_binary: parent_binary.as_deref().filter(|b| !b.is_empty()),
            namespace: meta.map(|m| m.namespace.as_str()),
            labels: meta.map(|m| &m.labels),
            image: container.map(|c| c.image.as_str()),
            destination: None,
        };
        let mut out = Vec::new();
        for rule in self.rules.evaluate(Trigger::Exec, &subject) {
            let context = finding::Context {
                identity: &identity,
                meta,
                container,
                parent: parent.as_deref(),
                time: self.clock.wall_time(exec.boot_ns),
            };
            let finding = finding::exec(rule, exec, &context);
            let key = (rule.id.clone(), exec.cgroup_id, exec.binary.clone());
            out.extend(self.repeats.admit(key, finding, now));
        }
        out
    }
}

#[cfg(test)]
mod tests;
