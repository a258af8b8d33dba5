//! The watcher against a fake API server on loopback that speaks list and watch.

mod taint;

use std::{collections::BTreeMap, time::Duration};

use serde_json::{Value, json};
use tokio::{sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use super::fake_api::{self, FakeApi, PODS};
use super::*;
use crate::pods::{Owner, PodSnapshot};

const NODE: &str = "node-a";
/// Generous: a reconnect waits out kube-rs's backoff (0.8 s doubling, with jitter).
const DEADLINE: Duration = Duration::from_mins(1);

/// A pod as the API serves it.
fn pod(name: &str, node: &str, app: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "shop", "uid": format!("uid-{name}"),
            "labels": {"app": app, "pod-template-hash": "7d4b9c"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "web-7d4b9c", "uid": "rs1", "controller": true}],
        },
        "spec": {
            "nodeName": node, "serviceAccountName": "web",
            "containers": [{"name": "web", "image": "registry.example/web:1"}],
        },
        "status": {"containerStatuses": [{"name": "web", "image": "registry.example/web:1",
            "imageID": "", "ready": true, "restartCount": 0,
            "containerID": format!("containerd://{name}-0123")}]},
    })
}

/// Pods by name, with their `app` label.
fn apps(snapshot: &PodSnapshot) -> BTreeMap<String, String> {
    snapshot
        .values()
        .map(|p| (p.name.clone(), p.labels["app"].clone()))
        .collect()
}

fn expect(pods: &[(&str, &str)]) -> BTreeMap<String, String> {
    pods.iter()
        .map(|(name, app)| ((*name).to_owned(), (*app).to_owned()))
        .collect()
}

/// Waits (up to [`DEADLINE`]) until the snapshot holds exactly `pods`.
async fn wait_for(rx: &mut watch::Receiver<PodSnapshot>, pods: &[(&str, &str)]) -> PodSnapshot {
    let want = expect(pods);
    let mut last = BTreeMap::new();
    let waited = tokio::time::timeout(
        DEADLINE,
        rx.wait_for(|snapshot| {
            last = apps(snapshot);
            last == want
        }),
    )
    .await;
    match waited {
        Ok(Ok(snapshot)) => snapshot.clone(),
        Ok(Err(_)) => panic!("the watcher dropped its sender"),
        Err(elapsed) => panic!("{elapsed} waiting for {want:?}; the snapshot is {last:?}"),
    }
}

struct Running {
    rx: watch::Receiver<PodSnapshot>,
    token: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    fn start(api: &FakeApi) -> Self {
        let token = CancellationToken::new();
        let (rx, task) = watch_pods(api.client(), NODE, token.clone());
        Self {
            rx,
            token,
            task: tokio::spawn(task),
        }
    }

    async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the task ends when cancelled")
            .expect("the task did not panic")
            .expect("the task ends with Ok");
    }
}

fn lists(api: &FakeApi) -> usize {
    api.seen().iter().filter(|s| !s.watch).count()
}

#[tokio::test]
async fn additions_changes_and_deletions_reach_the_snapshot() {
    let api = FakeApi::start();
    api.apply(PODS, pod("a", NODE, "v1"));
    api.apply(PODS, pod("b", NODE, "v1"));
    api.apply(PODS, pod("elsewhere", "node-b", "v1"));
    let mut watcher = Running::start(&api);
    let listed = wait_for(&mut watcher.rx, &[("a", "v1"), ("b", "v1")]).await;
    let a = &listed["uid-a"];
    assert_eq!(
        (a.namespace.as_str(), a.service_account.as_str()),
        ("shop", "web")
    );
    assert_eq!(
        a.owner,
        Some(Owner {
            kind: "Deployment".into(),
            name: "web".into()
        })
    );
    assert_eq!(a.containers[0].id, "a-0123");

    api.apply(PODS, pod("a", NODE, "v2"));
    wait_for(&mut watcher.rx, &[("a", "v2"), ("b", "v1")]).await;
    // Another node's pod, then one of ours: once ours is in, the other was filtered out.
    api.apply(PODS, pod("elsewhere-2", "node-b", "v1"));
    api.apply(PODS, pod("c", NODE, "v1"));
    wait_for(&mut watcher.rx, &[("a", "v2"), ("b", "v1"), ("c", "v1")]).await;
    api.delete(PODS, "b");
    wait_for(&mut watcher.rx, &[("a", "v2"), ("c", "v1")]).await;
    watcher.stop().await;

    let seen = api.seen();
    assert!(seen.iter().any(|s| s.watch) && seen.iter().any(|s| !s.watch));
    for request in &seen {
        assert_eq!(
            request.query.get("fieldSelector").map(String::as_str),
            Some("spec.nodeName=node-a"),
            "{request:?}"
        );
    }
}

/// The watch misses a deletion and its resourceVersion is compacted away; the API server
/// says so with `how`, and the watcher must relist to find out.
async fn relists_after_410(gone_as_status: bool) {
    let api = FakeApi::start();
    api.set_gone_as_status(gone_as_status);
    api.apply(PODS, pod("a", NODE, "v1"));
    api.apply(PODS, pod("b", NODE, "v1"));
    let mut watcher = Running::start(&api);
    wait_for(&mut watcher.rx, &[("a", "v1"), ("b", "v1")]).await;
    assert_eq!(lists(&api), 1);

    api.delete_unseen(PODS, "b");
    wait_for(&mut watcher.rx, &[("a", "v1")]).await;
    assert_eq!(lists(&api), 2, "one relist");
    // And the watch goes on from the new list.
    api.apply(PODS, pod("c", NODE, "v1"));
    wait_for(&mut watcher.rx, &[("a", "v1"), ("c", "v1")]).await;
    watcher.stop().await;
}

#[tokio::test]
async fn an_expired_resource_version_relists() {
    relists_after_410(false).await;
}

#[tokio::test]
async fn a_watch_refused_with_410_relists() {
    relists_after_410(true).await;
}

#[tokio::test]
async fn the_last_snapshot_stays_while_the_api_is_away() {
    let mut api = FakeApi::start();
    api.apply(PODS, pod("a", NODE, "v1"));
    api.apply(PODS, pod("b", NODE, "v1"));
    let mut watcher = Running::start(&api);
    let before = wait_for(&mut watcher.rx, &[("a", "v1"), ("b", "v1")]).await;

    api.stop().await;
    // Something on the port that hangs up on every connection: counts reconnect attempts.
    let listener = fake_api::bind(api.addr());
    let attempts = tokio::time::timeout(DEADLINE, async {
        for _ in 0..2 {
            drop(listener.accept().await.expect("a reconnect attempt"));
        }
    })
    .await;
    attempts.expect("the watcher keeps trying to reconnect");
    assert!(!watcher.task.is_finished(), "the task keeps running");
    assert_eq!(
        *watcher.rx.borrow(),
        before,
        "the last known pods stay in force"
    );
    drop(listener);

    // Changes while the agent could not see them, then the API server is back.
    api.delete(PODS, "a");
    api.apply(PODS, pod("b", NODE, "v2"));
    api.apply(PODS, pod("c", NODE, "v1"));
    api.restart();
    wait_for(&mut watcher.rx, &[("b", "v2"), ("c", "v1")]).await;
    watcher.stop().await;
}

#[test]
fn a_missing_in_cluster_config_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), "").unwrap();
    let message = no_config(dir.path());
    let token = dir.path().join("token").display().to_string();
    let namespace = dir.path().join("namespace").display().to_string();
    assert!(
        message.contains(&token) && message.contains(&namespace) && !message.contains("ca.crt"),
        "{message}"
    );
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
        assert!(message.contains("env KUBERNETES_SERVICE_HOST"), "{message}");
    }
}
