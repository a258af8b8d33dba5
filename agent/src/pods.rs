//! Pod metadata: what cgroup paths cannot say (namespace, name, service account, labels,
//! hostNetwork), keyed by pod UID. Without a Kubernetes API it comes from `pods.file`,
//! which is re-read when it changes; a file that fails to parse is reported and the last
//! good snapshot stays in force, so a bad edit never drops allowlisted pods.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use nodeward_runtime::config::{self, ConfigError, Validate};
use serde::Deserialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::file_watch::{self, Stamp};

/// How often the file's modification time and size are compared.
const POLL: Duration = Duration::from_millis(500);

/// What is known of one pod.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodMeta {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    #[serde(default)]
    pub service_account: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub host_network: bool,
    /// The pod's addresses (`status.podIPs`): the node's route to them names the node-side
    /// interface its network namespace sends through.
    #[serde(default, rename = "podIPs")]
    pub pod_ips: Vec<std::net::IpAddr>,
    /// The workload that owns the pod (a ReplicaSet's Deployment is named, not the
    /// ReplicaSet), when known.
    #[serde(default)]
    pub owner: Option<Owner>,
    /// The pod's containers, for images and container names.
    #[serde(default)]
    pub containers: Vec<ContainerMeta>,
}

/// A pod's controlling workload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Owner {
    /// `Deployment`, `DaemonSet`, `StatefulSet`, `Job`, `CronJob`, ...
    pub kind: String,
    pub name: String,
}

/// One container of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerMeta {
    pub name: String,
    pub image: String,
    /// Runtime id without the `containerd://` prefix; empty until the container started.
    #[serde(default)]
    pub id: String,
}

/// Every known pod by UID; cheap to clone and share.
pub type PodSnapshot = Arc<HashMap<String, PodMeta>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PodsFile {
    pods: Vec<PodMeta>,
}

impl Validate for PodsFile {
    fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for (i, pod) in self.pods.iter().enumerate() {
            if pod.uid.is_empty() {
                return Err(format!("pods[{i}].uid: must not be empty"));
            }
            if !seen.insert(&pod.uid) {
                return Err(format!("pods[{i}].uid: {} is listed twice", pod.uid));
            }
        }
        Ok(())
    }
}

/// Reads a pods file into a snapshot.
pub fn read(path: &Path) -> Result<PodSnapshot, ConfigError> {
    let file: PodsFile = config::load(path)?;
    Ok(Arc::new(
        file.pods.into_iter().map(|p| (p.uid.clone(), p)).collect(),
    ))
}

/// Starts from the file's current content (an unreadable file starts empty, and says so)
/// and publishes every good change until `token` is cancelled.
pub fn watch_file(
    path: PathBuf,
    token: CancellationToken,
) -> (
    watch::Receiver<PodSnapshot>,
    impl Future<Output = anyhow::Result<()>>,
) {
    // Stamped before the first read, so a change racing with it is seen.
    let since = Stamp::of(&path);
    let initial = read(&path).unwrap_or_else(|err| {
        warn!(error = %err, "pod metadata unavailable; pods are known by UID only until the file is fixed");
        PodSnapshot::default()
    });
    info!(file = %path.display(), pods = initial.len(), "pod metadata loaded");
    let (tx, rx) = watch::channel(initial);
    let task = async move {
        file_watch::on_change(path, since, POLL, token, |path| {
            reload(path, &tx);
        })
        .await;
        Ok(())
    };
    (rx, task)
}

/// Publishes the file's content if it parses; otherwise reports why and keeps the old.
fn reload(path: &Path, tx: &watch::Sender<PodSnapshot>) -> bool {
    match read(path) {
        Ok(snapshot) => {
            info!(file = %path.display(), pods = snapshot.len(), "pod metadata reloaded");
            tx.send_replace(snapshot);
            true
        }
        Err(err) => {
            warn!(error = %err, "pod metadata not reloaded; keeping the previous snapshot");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("pods.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn reads_the_documented_shape() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "pods:\n- uid: u1\n  name: aws-node-x\n  namespace: kube-system\n  serviceAccount: aws-node\n  labels: {k8s-app: aws-node}\n  hostNetwork: true\n",
        );
        let pods = read(&path).unwrap();
        let pod = &pods["u1"];
        assert_eq!(
            (pod.namespace.as_str(), pod.service_account.as_str()),
            ("kube-system", "aws-node")
        );
        assert!(pod.host_network);
        assert_eq!(pod.labels["k8s-app"], "aws-node");
    }

    #[test]
    fn bad_files_name_the_file_and_entry() {
        let dir = tempfile::tempdir().unwrap();
        for (text, needle) in [
            (
                "pods:\n- uid: u1\n  name: a\n  namespace: n\n- uid: u1\n  name: b\n  namespace: n\n",
                "listed twice",
            ),
            ("pods:\n- uid: ''\n  name: a\n  namespace: n\n", "uid"),
            ("pods:\n- uid: u1\n  nmae: a\n  namespace: n\n", "nmae"),
        ] {
            let err = read(&write(dir.path(), text)).unwrap_err().to_string();
            assert!(
                err.contains("pods.yaml") && err.contains(needle),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn a_bad_edit_keeps_the_last_good_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "pods:\n- uid: u1\n  name: a\n  namespace: n\n");
        let (tx, rx) = watch::channel(read(&path).unwrap());
        write(dir.path(), "pods: [oops\n");
        assert!(!reload(&path, &tx));
        assert_eq!(rx.borrow().len(), 1, "the good snapshot stays");
        std::fs::remove_file(&path).unwrap();
        assert!(!reload(&path, &tx), "a vanished file is not an empty node");
        assert_eq!(rx.borrow().len(), 1);
    }

    #[tokio::test]
    async fn changes_are_published() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "pods:\n- uid: u1\n  name: a\n  namespace: n\n");
        let token = CancellationToken::new();
        let (mut rx, task) = watch_file(path.clone(), token.clone());
        let handle = tokio::spawn(task);
        assert_eq!(rx.borrow().len(), 1);
        let next = dir.path().join("next.yaml");
        std::fs::write(
            &next,
            "pods:\n- uid: u1\n  name: a\n  namespace: n\n- uid: u2\n  name: b\n  namespace: n\n",
        )
        .unwrap();
        std::fs::rename(&next, &path).unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rx.borrow().len(), 2);
        token.cancel();
        handle.await.unwrap().unwrap();
    }
}
