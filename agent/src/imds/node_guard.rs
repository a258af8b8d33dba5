//! The node side of IMDS enforcement (the `imds_uplink` program): keeps it on every
//! interface of the node's network namespace that routes to a blocked prefix, and tells
//! it which interface leads to which pod, so a packet the node forwards out of a pod's
//! namespace is judged as that pod's. Interfaces come and go (the VPC CNI attaches ENIs
//! as pods arrive), so the routes are read again on every pass.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    os::fd::{AsFd as _, OwnedFd},
    path::PathBuf,
    sync::Arc,
};

use anyhow::Context as _;
use aya::maps::{HashMap, MapData};
use ipnet::IpNet;
use nodeward_common::imds as shared;
use nodeward_proto::model::Finding;
use tracing::{info, warn};

use crate::{
    bpf::{self, Pins},
    findings,
    identity::CgroupIndex,
    metrics::Metrics,
    netlink, netns,
    pods::PodSnapshot,
};

pub struct NodeGuard {
    program: OwnedFd,
    metrics: Arc<Metrics>,
    pins: Pins,
    host_netns: PathBuf,
    pod_links: HashMap<MapData, u32, u64>,
    index: CgroupIndex,
    /// Interfaces this agent put the program on.
    guarded: BTreeSet<u32>,
    /// What the last pass wrote to `IMDS_POD_LINKS`, and the routes and pod addresses it
    /// came from: unchanged inputs need no route lookups.
    links: Option<(Inputs, BTreeMap<u32, u64>)>,
    /// The last pass's failure, so a lasting one is logged once.
    failing: Option<String>,
    /// A change of state for the SOC, until the reconciler sends it.
    health: Option<Finding>,
}

/// What the pods' interfaces are derived from: the node's routes, and each pod's
/// addresses by its cgroup id.
type Inputs = (Vec<netlink::Route>, BTreeMap<u64, Vec<IpAddr>>);

impl NodeGuard {
    pub fn new(
        program: OwnedFd,
        metrics: Arc<Metrics>,
        pins: Pins,
        host_netns: PathBuf,
        pod_links: HashMap<MapData, u32, u64>,
        index: CgroupIndex,
    ) -> Self {
        Self {
            program,
            metrics,
            pins,
            host_netns,
            pod_links,
            index,
            guarded: BTreeSet::new(),
            links: None,
            failing: None,
            health: None,
        }
    }

    /// One pass; a failure is logged (once while it lasts) and retried on the next, since
    /// the pod cgroup programs keep enforcing meanwhile.
    pub fn sync(&mut self, blocked: &[IpNet], pods: &PodSnapshot) {
        let result = self.try_sync(blocked, pods);
        self.metrics
            .node_guard(result.is_ok().then_some(self.guarded.len()));
        match result {
            Ok(()) => {
                if self.failing.take().is_some() {
                    info!(netns = %self.host_netns.display(), "node-side IMDS guard recovered");
                    self.health = Some(findings::imds_node_guard(None, self.guarded.len()));
                }
            }
            Err(err) => {
                let message = format!("{err:#}");
                if self.failing.as_ref() != Some(&message) {
                    warn!(
                        netns = %self.host_netns.display(),
                        error = message,
                        hint = "run the agent in the node's network namespace (hostNetwork: true, deploy/components/node-guard)",
                        "node-side IMDS guard failed; frames from pods' packet sockets are not checked until it succeeds"
                    );
                    // The SOC hears of the change of state, not of every new error text.
                    if self.failing.is_none() {
                        self.health = Some(findings::imds_node_guard(Some(&message), 0));
                    }
                    self.failing = Some(message);
                }
            }
        }
    }

    /// A finding for the SOC when the guard stopped or started working since last asked.
    pub fn take_health(&mut self) -> Option<Finding> {
        self.health.take()
    }

    fn try_sync(&mut self, blocked: &[IpNet], pods: &PodSnapshot) -> anyhow::Result<()> {
        let addresses: BTreeMap<u64, Vec<IpAddr>> = pods
            .values()
            .filter(|p| !p.host_network && !p.pod_ips.is_empty())
            .filter_map(|p| Some((self.index.pod_cgroup_id(&p.uid)?, p.pod_ips.clone())))
            .collect();
        let last = self.links.as_ref();
        let (uplinks, inputs, found) =
            netns::run_in(&self.host_netns, || -> anyhow::Result<_> {
                let routes = netlink::routes().context("reading the node's routes")?;
                let uplinks = netlink::uplinks(&routes, blocked);
                let inputs = (routes, addresses);
                if last.is_some_and(|(seen, _)| *seen == inputs) {
                    return Ok((uplinks, inputs, None));
                }
                let found = pod_links(&inputs.1, &uplinks)?;
                Ok((uplinks, inputs, Some(found)))
            })??;
        let (program, netns) = (self.program.as_fd(), &self.host_netns);
        let changes = bpf::sync_interface_links(
            &self.pins,
            shared::PROG_UPLINK,
            program,
            &uplinks,
            &mut self.guarded,
            |ifindex| {
                Ok(netns::run_in(netns, || {
                    bpf::tcx_egress_link(program, ifindex)
                })??)
            },
        )?;
        if changes != bpf::InterfaceLinks::default() {
            info!(
                interfaces = ?uplinks,
                attached = ?changes.attached,
                adopted = ?changes.adopted,
                detached = ?changes.detached,
                "node-side IMDS guard on the interfaces that lead to the blocked prefixes"
            );
        }
        let Some((links, shared)) = found else {
            return Ok(());
        };
        if self
            .links
            .as_ref()
            .is_none_or(|(_, written)| *written != links)
        {
            self.write_links(&links)?;
            info!(
                pods = links.len(),
                shared_interfaces = shared,
                "node interfaces of pods updated"
            );
        }
        self.links = Some((inputs, links));
        Ok(())
    }

    /// Makes `IMDS_POD_LINKS` hold exactly `links`: new and changed entries first, then
    /// the stale ones out (an interface index can be reused by the next pod's link).
    fn write_links(&mut self, links: &BTreeMap<u32, u64>) -> anyhow::Result<()> {
        let err = || bpf::map_err(shared::MAP_POD_LINKS);
        let present: BTreeMap<u32, u64> = self
            .pod_links
            .iter()
            .collect::<Result<_, _>>()
            .map_err(err())?;
        for (ifindex, pod) in links {
            if present.get(ifindex) != Some(pod) {
                self.pod_links.insert(ifindex, pod, 0).map_err(err())?;
            }
        }
        for ifindex in present.keys().filter(|i| !links.contains_key(i)) {
            self.pod_links.remove(ifindex).map_err(err())?;
        }
        Ok(())
    }
}

/// Which interface leads to each pod: the node's route to the pod's addresses. Interfaces
/// that also lead to the blocked prefixes are left out, and so are those that lead to
/// several pods (a CNI that routes every pod through one device), where no pod's
/// allowance can be told apart; the second value counts those.
fn pod_links(
    pods: &BTreeMap<u64, Vec<IpAddr>>,
    uplinks: &BTreeSet<u32>,
) -> anyhow::Result<(BTreeMap<u32, u64>, usize)> {
    let mut found: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    for (pod, addresses) in pods {
        for address in addresses {
            let Some(ifindex) = netlink::route_to(*address)
                .with_context(|| format!("looking up the route to pod address {address}"))?
            else {
                continue;
            };
            if ifindex != LOOPBACK && !uplinks.contains(&ifindex) {
                found.entry(ifindex).or_default().insert(*pod);
            }
        }
    }
    let shared = found.values().filter(|pods| pods.len() > 1).count();
    let links = found
        .into_iter()
        .filter_map(|(ifindex, pods)| match pods.len() {
            1 => pods.first().map(|pod| (ifindex, *pod)),
            _ => None,
        })
        .collect();
    Ok((links, shared))
}

/// `lo` is interface 1 in every network namespace.
const LOOPBACK: u32 = 1;
