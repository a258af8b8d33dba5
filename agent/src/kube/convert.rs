//! `Pod` (as the API serves it) → [`PodMeta`] (what rules and the allowlist match on).

use std::fmt;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use crate::pods::{ContainerMeta, Owner, PodMeta};

/// The label the Deployment controller puts on a ReplicaSet and its pods; the ReplicaSet
/// is named `<deployment>-<hash>`.
const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// What the API server assigns when a pod names no service account.
const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// A pod the API served without `metadata.uid`; it cannot be matched to a cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingUid {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for MissingUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pod {}/{} has no metadata.uid",
            self.namespace, self.name
        )
    }
}

impl std::error::Error for MissingUid {}

impl TryFrom<&Pod> for PodMeta {
    type Error = MissingUid;

    fn try_from(pod: &Pod) -> Result<Self, MissingUid> {
        let meta = &pod.metadata;
        let name = meta.name.clone().unwrap_or_default();
        let namespace = meta.namespace.clone().unwrap_or_default();
        let Some(uid) = meta.uid.clone().filter(|uid| !uid.is_empty()) else {
            return Err(MissingUid { namespace, name });
        };
        let labels = meta.labels.clone().unwrap_or_default();
        let spec = pod.spec.as_ref();
        let service_account = spec
            .and_then(|s| s.service_account_name.clone())
            .filter(|sa| !sa.is_empty())
            .unwrap_or_else(|| DEFAULT_SERVICE_ACCOUNT.to_owned());
        let owner = meta
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true))
            .map(|r| workload(&r.kind, &r.name, labels.get(POD_TEMPLATE_HASH)));
        Ok(Self {
            uid,
            name,
            namespace,
            service_account,
            host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
            pod_ips: pod_ips(pod),
            owner,
            containers: containers(pod),
            labels,
        })
    }
}

/// `status.podIPs` that parse as addresses (the API server validates them; anything else
/// is skipped rather than failing the whole pod).
fn pod_ips(pod: &Pod) -> Vec<std::net::IpAddr> {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ips.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.ip.parse().ok())
        .collect()
}

/// The workload a person would name: a Deployment's pods are owned by a ReplicaSet the
/// Deployment controller named `<deployment>-<pod-template-hash>`. A Job made by a
/// CronJob stays a Job: its pods carry nothing that names the CronJob, and guessing from
/// the Job's name suffix would misname hand-made Jobs.
fn workload(kind: &str, name: &str, template_hash: Option<&String>) -> Owner {
    let deployment = (kind == "ReplicaSet")
        .then_some(template_hash)
        .flatten()
        .and_then(|hash| name.strip_suffix(hash.as_str())?.strip_suffix('-'))
        .filter(|d| !d.is_empty());
    match deployment {
        Some(deployment) => Owner {
            kind: "Deployment".to_owned(),
            name: deployment.to_owned(),
        },
        None => Owner {
            kind: kind.to_owned(),
            name: name.to_owned(),
        },
    }
}

/// Every container that runs in the pod's cgroup: regular, init and ephemeral ones (a
/// `kubectl debug` shell is exactly what the exec rules must attribute).
fn containers(pod: &Pod) -> Vec<ContainerMeta> {
    let (spec, status) = (pod.spec.as_ref(), pod.status.as_ref());
    let id = |statuses: Option<&Vec<ContainerStatus>>, name: &str| -> String {
        statuses
            .into_iter()
            .flatten()
            .find(|s| s.name == name)
            .and_then(|s| s.container_id.as_deref())
            .map(runtime_id)
            .unwrap_or_default()
            .to_owned()
    };
    let mut out = Vec::new();
    for (containers, statuses) in [
        (
            spec.map(|s| &s.containers),
            status.and_then(|s| s.container_statuses.as_ref()),
        ),
        (
            spec.and_then(|s| s.init_containers.as_ref()),
            status.and_then(|s| s.init_container_statuses.as_ref()),
        ),
    ] {
        out.extend(containers.into_iter().flatten().map(|c| ContainerMeta {
            id: id(statuses, &c.name),
            image: c.image.clone().unwrap_or_default(),
            name: c.name.clone(),
        }));
    }
    let ephemeral = status.and_then(|s| s.ephemeral_container_statuses.as_ref());
    let ephemeral_specs = spec.and_then(|s| s.ephemeral_containers.as_ref());
    out.extend(
        ephemeral_specs
            .into_iter()
            .flatten()
            .map(|c| ContainerMeta {
                id: id(ephemeral, &c.name),
                image: c.image.clone().unwrap_or_default(),
                name: c.name.clone(),
            }),
    );
    out
}

/// `containerd://<id>`, `cri-o://<id>`, `docker://<id>` → `<id>`, the form cgroup paths
/// carry.
fn runtime_id(container_id: &str) -> &str {
    container_id
        .split_once("://")
        .map_or(container_id, |(_, id)| id)
}

#[cfg(test)]
mod tests;
