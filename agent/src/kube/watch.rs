//! The watch loop: kube-rs lists, watches, resumes and relists; this loop turns its events
//! into snapshots and keeps going through every error.

use std::{future::Future, pin::pin, time::Duration};

use anyhow::bail;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client,
    runtime::{
        WatchStreamExt as _,
        watcher::{self, DefaultBackoff, watcher},
    },
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::store::PodStore;
use crate::pods::PodSnapshot;

/// HTTP 410 Gone: the resourceVersion a watch resumed from is older than the API server
/// keeps (etcd compaction, or another API server behind the load balancer).
const GONE: u16 = 410;

/// Watches the pods bound to `node_name` and publishes a snapshot whenever their metadata
/// changes; the snapshot starts empty and stays as it was while the API is unreachable.
/// The task returns `Ok` when `token` is cancelled.
pub fn watch_pods(
    client: Client,
    node_name: &str,
    token: CancellationToken,
) -> (
    watch::Receiver<PodSnapshot>,
    impl Future<Output = anyhow::Result<()>> + Send + use<>,
) {
    let (tx, rx) = watch::channel(PodSnapshot::default());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node_name}"));
    let task = run(Api::all(client), config, node_name.to_owned(), tx, token);
    (rx, task)
}

async fn run(
    pods: Api<Pod>,
    config: watcher::Config,
    node: String,
    tx: watch::Sender<PodSnapshot>,
    token: CancellationToken,
) -> anyhow::Result<()> {
    info!(node, "watching this node's pods through the Kubernetes API");
    let mut store = PodStore::default();
    let mut failing = false;
    // Paces rebuilding the watcher, the one recovery kube-rs leaves to us.
    let mut rebuild_backoff = DefaultBackoff::default();
    loop {
        let mut events = pin!(watcher(pods.clone(), config.clone()).default_backoff());
        loop {
            let event = tokio::select! {
                () = token.cancelled() => return Ok(()),
                event = events.next() => event,
            };
            match event {
                Some(Ok(event)) => {
                    if std::mem::take(&mut failing) {
                        info!(node, "pod watch recovered");
                    }
                    if let Some(snapshot) = store.apply(event) {
                        tx.send_replace(snapshot);
                    }
                }
                Some(Err(err)) => {
                    failing = true;
                    warn!(
                        node,
                        error = %err,
                        pods = store.known(),
                        "pod watch failed; the last known pods stay in force until it recovers"
                    );
                    if refused_as_expired(&err) {
                        break;
                    }
                }
                // `watcher` is endless by contract; if that ever changes, stopping the
                // agent (to be restarted) beats serving stale metadata without saying so.
                None => bail!("the pod watcher ended"),
            }
        }
        let delay = rebuild_backoff.next().unwrap_or(Duration::from_secs(30));
        tokio::select! {
            () = token.cancelled() => return Ok(()),
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// kube-rs 5.0 relists when an expired resourceVersion is reported as an ERROR watch
/// event (what the API server does), but when the watch request itself is refused with
/// HTTP 410 it retries the same resourceVersion forever (`State::InitListed` in its
/// `watcher.rs`). A new watcher starts with a list, which is what a 410 asks for.
fn refused_as_expired(err: &watcher::Error) -> bool {
    matches!(err, watcher::Error::WatchStartFailed(kube::Error::Api(status)) if status.code == GONE)
}
