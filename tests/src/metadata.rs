//! The pod metadata file an agent reads without a cluster (`pods: {file: PATH}` in its
//! config): `{pods: [{uid, name, namespace, serviceAccount, labels, hostNetwork, podIPs}]}`.

use std::path::Path;

use serde_json::json;

use crate::node::SimNode;
use crate::pod::SimPod;

impl SimNode {
    /// The pod metadata file's contents for the node's current pods.
    ///
    /// It is JSON, which is also YAML, so any YAML reader takes it and the testkit needs no
    /// YAML writer.
    #[must_use]
    pub fn pods_file(&self) -> String {
        let pods: Vec<_> = self
            .pods()
            .iter()
            .map(|pod| {
                json!({
                    "uid": pod.uid(),
                    "name": pod.name(),
                    "namespace": pod.namespace(),
                    "serviceAccount": pod.service_account(),
                    "labels": pod.labels(),
                    "hostNetwork": pod.is_host_network(),
                    "podIPs": pod_ips(pod),
                })
            })
            .collect();
        serde_json::to_string_pretty(&json!({ "pods": pods })).expect("serialize pod metadata")
    }

    /// Writes [`pods_file`](Self::pods_file) to `path`, atomically (a temporary file renamed
    /// over it) so an agent watching the file never reads half of it.
    pub fn write_pods_file(&self, path: &Path) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.pods_file())
            .unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
        std::fs::rename(&tmp, path)
            .unwrap_or_else(|e| panic!("rename {} to {}: {e}", tmp.display(), path.display()));
    }
}

/// What `status.podIPs` says: the pod's own addresses, or none for a hostNetwork pod
/// (whose addresses are the node's and lead to no pod interface).
fn pod_ips(pod: &SimPod) -> Vec<String> {
    if pod.is_host_network() {
        return Vec::new();
    }
    let v4 = pod.ipv4().map(|a| a.to_string());
    let v6 = pod.ipv6().map(|a| a.to_string());
    v4.into_iter().chain(v6).collect()
}
