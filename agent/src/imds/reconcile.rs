//! Keeps the kernel's IMDS state equal to what the configuration and the pod metadata
//! call for, applying changes live (mode, blocked prefixes, allowlist) without touching
//! the attached programs. An allowlisted pod whose cgroup does not exist yet is looked for
//! again every second: until it appears it is simply not allowed, the safe direction.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use ipnet::IpNet;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{maps::ImdsMaps, node_guard::NodeGuard};
use crate::{
    config::{Config, ImdsConfig, ImdsMode},
    event::Event,
    identity::CgroupIndex,
    pods::PodSnapshot,
};

/// How often to look for the cgroups of allowed pods that have not appeared yet.
const PENDING_RETRY: Duration = Duration::from_secs(1);
/// How often to rescan anyway, to drop allowances of pods that went away.
const REFRESH: Duration = Duration::from_secs(30);
/// How often the node-side guard rereads the routes (new interfaces, moved pods).
const GUARD_RESCAN: Duration = Duration::from_secs(2);

pub struct Reconciler {
    maps: ImdsMaps,
    index: CgroupIndex,
    mode: Option<ImdsMode>,
    cidrs: Option<Vec<IpNet>>,
    allowed: Option<BTreeSet<u64>>,
    /// Allowed pods whose cgroup was not found.
    pending: usize,
    guard: Option<NodeGuard>,
}

impl Reconciler {
    pub fn new(maps: ImdsMaps, index: CgroupIndex, guard: Option<NodeGuard>) -> Self {
        Self {
            maps,
            index,
            mode: None,
            cidrs: None,
            allowed: None,
            pending: 0,
            guard,
        }
    }

    /// Writes what `config` and `pods` call for, changing only what differs.
    pub fn apply(&mut self, config: &ImdsConfig, pods: &PodSnapshot) -> anyhow::Result<()> {
        if self.cidrs.as_deref() != Some(&config.blocked_cidrs) {
            self.maps.set_blocked(&config.blocked_cidrs)?;
            info!(blocked = ?config.blocked_cidrs, "IMDS blocked prefixes set");
            self.cidrs = Some(config.blocked_cidrs.clone());
        }
        if self.mode != Some(config.mode) {
            self.maps.set_mode(config.mode)?;
            info!(mode = ?config.mode, "IMDS mode set");
            self.mode = Some(config.mode);
        }
        // Pods' interfaces before their allowances: an allowance the node side cannot yet
        // attribute stays closed there, never the reverse.
        if let Some(guard) = &mut self.guard {
            guard.sync(&config.blocked_cidrs, pods);
        }
        let mut allowed = BTreeSet::new();
        let mut names = Vec::new();
        let mut pending = 0;
        for pod in pods.values() {
            if !config
                .allow
                .iter()
                .any(|r| r.matches(&pod.namespace, &pod.service_account, &pod.labels))
            {
                continue;
            }
            match self.index.pod_cgroup_id(&pod.uid) {
                Some(id) => {
                    allowed.insert(id);
                    names.push(format!("{}/{}", pod.namespace, pod.name));
                }
                None => pending += 1,
            }
        }
        if self.allowed.as_ref() != Some(&allowed) {
            self.maps.set_allowed(&allowed)?;
            names.sort();
            info!(pods = ?names, pending, "IMDS allowlist set");
            self.allowed = Some(allowed);
        }
        self.pending = pending;
        Ok(())
    }

    /// Applies every change of configuration or pods until cancelled.
    pub async fn run(
        mut self,
        mut config: watch::Receiver<Arc<Config>>,
        mut pods: watch::Receiver<PodSnapshot>,
        events: mpsc::Sender<Event>,
        token: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut config_open = true;
        let mut pods_open = true;
        let mut since_refresh = Duration::ZERO;
        loop {
            if let Some(finding) = self.guard.as_mut().and_then(NodeGuard::take_health)
                && events.send(Event::Health(Box::new(finding))).await.is_err()
            {
                return Ok(());
            }
            let mut retry = if self.pending > 0 {
                PENDING_RETRY
            } else {
                REFRESH.saturating_sub(since_refresh)
            };
            if self.guard.is_some() {
                retry = retry.min(GUARD_RESCAN);
            }
            tokio::select! {
                () = token.cancelled() => return Ok(()),
                changed = config.changed(), if config_open => config_open = changed.is_ok(),
                changed = pods.changed(), if pods_open => pods_open = changed.is_ok(),
                () = tokio::time::sleep(retry) => {
                    since_refresh += retry;
                    if since_refresh >= REFRESH || self.pending > 0 {
                        since_refresh = Duration::ZERO;
                        // Pods may have come or gone without the metadata changing.
                        self.index.invalidate();
                    }
                }
            }
            let imds = config.borrow().imds.clone();
            let snapshot = pods.borrow().clone();
            // Cgroup scans, netlink and a thread in the node's namespace: blocking work.
            if let Err(err) = tokio::task::block_in_place(|| self.apply(&imds, &snapshot)) {
                warn!(
                    error = format!("{err:#}"),
                    "updating IMDS enforcement state failed"
                );
                return Err(err);
            }
        }
    }
}
