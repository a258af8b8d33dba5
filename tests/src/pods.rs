//! Adding and removing pods on a running [`SimNode`], as kubelet would.

use std::sync::PoisonError;

use crate::cgroup::{cgroup2_mount, create_all, remove_tree};
use crate::netns::NetNs;
use crate::network::{MAX_NETWORK_PODS, prepare, wire_pod};
use crate::node::SimNode;
use crate::pod::{PodSpec, SimPod, container_scope, pod_slice, random_container_id};

/// A pod's record in its node: its handle and, unless hostNetwork, its namespace.
#[derive(Debug)]
pub(crate) struct PodEntry {
    pod: SimPod,
    /// Held only so that dropping the entry deletes the namespace.
    _netns: Option<NetNs>,
}

#[derive(Debug, Default)]
pub(crate) struct Pods {
    entries: Vec<PodEntry>,
    /// The last network index handed out; never reused, so addresses stay unambiguous.
    last_index: u8,
}

impl SimNode {
    /// Makes a pod: its cgroups and, unless hostNetwork, its namespace and link to the node.
    /// Works while an agent runs, as kubelet would.
    pub fn add_pod(&self, spec: PodSpec) -> SimPod {
        let mut pods = self.pods.lock().unwrap_or_else(PoisonError::into_inner);
        let taken = pods
            .entries
            .iter()
            .any(|e| e.pod.name() == spec.name && e.pod.namespace() == spec.namespace);
        assert!(
            !taken,
            "pod {}/{} exists already on node {}",
            spec.namespace, spec.name, self.id
        );
        let uid = spec
            .uid
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let container_id = spec
            .container_id
            .clone()
            .unwrap_or_else(random_container_id);
        let pod_cgroup = self.pod_cgroup_path().join(pod_slice(spec.qos, &uid));
        let container_cgroup = pod_cgroup.join(container_scope(&container_id));
        create_all(&cgroup2_mount().join(&container_cgroup));
        let (netns, netns_name, addrs) = if spec.host_network {
            (None, self.node_ns.name().to_owned(), None)
        } else {
            assert!(
                pods.last_index < MAX_NETWORK_PODS,
                "a SimNode holds at most {MAX_NETWORK_PODS} pods"
            );
            pods.last_index += 1;
            let n = pods.last_index;
            let ns = NetNs::new(&format!("{}-pod{n}", self.id));
            prepare(&ns, false);
            let addrs = wire_pod(&self.node_ns, &ns, n);
            let name = ns.name().to_owned();
            (Some(ns), name, Some(addrs))
        };
        let pod = SimPod {
            spec,
            uid,
            container_id,
            netns_name,
            pod_cgroup,
            container_cgroup,
            addrs,
        };
        pods.entries.push(PodEntry {
            pod: pod.clone(),
            _netns: netns,
        });
        pod
    }

    /// Deletes a pod: kills its processes, removes its cgroups and its namespace.
    pub fn remove_pod(&self, pod: &SimPod) {
        let mut pods = self.pods.lock().unwrap_or_else(PoisonError::into_inner);
        let at = pods.entries.iter().position(|e| e.pod.uid == pod.uid);
        let entry = pods
            .entries
            .remove(at.unwrap_or_else(|| panic!("no pod {} on this node", pod.name())));
        remove_tree(&cgroup2_mount().join(&entry.pod.pod_cgroup))
            .unwrap_or_else(|e| panic!("remove the cgroups of pod {}: {e}", pod.name()));
    }

    /// The pod named `name`; panics if there is none.
    #[must_use]
    pub fn pod(&self, name: &str) -> SimPod {
        let pods = self.pods.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = pods.entries.iter().find(|e| e.pod.name() == name);
        entry
            .unwrap_or_else(|| panic!("no pod {name} on node {}", self.id))
            .pod
            .clone()
    }

    /// All pods, oldest first.
    #[must_use]
    pub fn pods(&self) -> Vec<SimPod> {
        let pods = self.pods.lock().unwrap_or_else(PoisonError::into_inner);
        pods.entries.iter().map(|e| e.pod.clone()).collect()
    }
}
