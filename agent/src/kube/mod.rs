//! Pod metadata from the Kubernetes API: namespace, name, service account, labels, owning
//! workload and containers of the pods bound to this node, keyed by pod UID, published as
//! [`PodSnapshot`]s like the `pods.file` source publishes them.
//!
//! - The watch asks for this node's pods only (field selector `spec.nodeName=<node>`), so a
//!   DaemonSet of agents costs the API server one small watch per node rather than every
//!   agent receiving every pod of the cluster; the RBAC it needs is `get`, `list` and
//!   `watch` on `pods`.
//! - kube-rs's watcher lists, watches, resumes from the last resourceVersion and relists
//!   after a 410, with client-go's backoff; a relist is swapped in whole once complete.
//! - When the API is unreachable the last known snapshot stays in force: enforcement and
//!   rules keep the pods they knew (allowlisted pods stay allowed) rather than forgetting
//!   every pod whenever the control plane has a bad minute. A pod created meanwhile is
//!   known by its UID only, as it is without any metadata source.
//!
//! [`PodSnapshot`]: crate::pods::PodSnapshot
mod convert;
mod store;
pub mod taint;
mod watch;

use std::path::Path;

use anyhow::anyhow;
use kube::Client;

pub use self::{taint::spawn_startup_taint_removal, watch::watch_pods};

/// What in-cluster config is made of; named in the error when it cannot be loaded.
const SERVICE_ENV: [&str; 2] = ["KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"];
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const SERVICE_ACCOUNT_FILES: [&str; 3] = ["token", "ca.crt", "namespace"];

/// A client for the API server the agent's pod runs under, authenticated as its service
/// account (or from a kubeconfig, when run outside a cluster for development).
pub async fn in_cluster_client() -> anyhow::Result<Client> {
    match Client::try_default().await {
        Ok(client) => Ok(client),
        Err(kube::Error::InferConfig(err)) => {
            Err(anyhow!(err).context(no_config(Path::new(SERVICE_ACCOUNT_DIR))))
        }
        Err(err) => Err(anyhow!(err).context("building the Kubernetes API client")),
    }
}

/// Names the environment variables and service account files in-cluster config needs
/// that are not there; kube-rs's own error stops at the first and does not name it.
fn no_config(service_account_dir: &Path) -> String {
    let env = SERVICE_ENV
        .into_iter()
        .filter(|var| std::env::var_os(var).is_none_or(|v| v.is_empty()))
        .map(|var| format!("env {var}"));
    let files = SERVICE_ACCOUNT_FILES
        .into_iter()
        .map(|file| service_account_dir.join(file))
        .filter(|path| !path.is_file())
        .map(|path| path.display().to_string());
    let missing: Vec<String> = env.chain(files).collect();
    let in_cluster = if missing.is_empty() {
        // All there, so unreadable or malformed: the error's source says which.
        "the in-cluster configuration did not load".to_owned()
    } else {
        format!("in-cluster configuration is missing {}", missing.join(", "))
    };
    format!(
        "no Kubernetes API configuration: {in_cluster}, and there is no kubeconfig ($KUBECONFIG, ~/.kube/config)"
    )
}

#[cfg(test)]
pub mod fake_api;
#[cfg(test)]
mod tests;
