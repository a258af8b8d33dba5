//! The pod metadata file an agent reads without a cluster (`pods: {file: PATH}` in its
//! config): `{pods: [{uid, name, namespace, serviceAccount, labels, hostNetwork}]}`.

use std::path::Path;

use serde_json::json;

use crate::node::SimNode;

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
