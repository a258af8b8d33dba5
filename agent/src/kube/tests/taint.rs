//! Removing the startup taint, against a fake API server that serves Nodes.

use std::time::Duration;

use hyper::Method;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::kube::fake_api::{FakeApi, NODES};
use crate::kube::taint::{Backoff, Outcome, remove_taint};

const NODE: &str = "ip-10-0-1-7";
const KEY: &str = "nodeward.io/agent-not-ready";
const FAST: Backoff = Backoff {
    initial: Duration::from_millis(5),
    max: Duration::from_millis(20),
};
const DEADLINE: Duration = Duration::from_secs(30);

/// Nodes as the tests set them up and read them back.
trait Nodes {
    /// Creates a Node with these taints (`(key, effect)`).
    fn node(&self, name: &str, taints: &[(&str, &str)]);
    /// The keys of a Node's taints, in order.
    fn taint_keys(&self, name: &str) -> Vec<String>;
}

impl Nodes for FakeApi {
    fn node(&self, name: &str, taints: &[(&str, &str)]) {
        let taints: Vec<serde_json::Value> = taints
            .iter()
            .map(|(key, effect)| json!({"key": key, "effect": effect}))
            .collect();
        let mut spec = json!({"providerID": format!("aws:///eu-west-1a/i-{name}")});
        if !taints.is_empty() {
            spec["taints"] = taints.into();
        }
        self.apply(
            NODES,
            json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                "spec": spec,
            }),
        );
    }

    fn taint_keys(&self, name: &str) -> Vec<String> {
        self.get(NODES, name).expect("the node")["spec"]["taints"]
            .as_array()
            .map(|taints| {
                taints
                    .iter()
                    .map(|t| t["key"].as_str().expect("a key").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

async fn remove(api: &FakeApi) -> Outcome {
    let token = CancellationToken::new();
    tokio::time::timeout(
        DEADLINE,
        remove_taint(api.client(), NODE, KEY, FAST, &token),
    )
    .await
    .expect("the taint removal finishes")
}

#[tokio::test]
async fn the_startup_taint_is_removed_and_the_others_kept() {
    let api = FakeApi::start();
    api.node(
        NODE,
        &[
            ("node.kubernetes.io/not-ready", "NoSchedule"),
            (KEY, "NoSchedule"),
            ("dedicated", "NoExecute"),
        ],
    );
    api.node("ip-10-0-1-8", &[(KEY, "NoSchedule")]);
    let before = api.get(NODES, NODE).expect("the node");

    assert_eq!(remove(&api).await, Outcome::Removed);
    assert_eq!(
        api.taint_keys(NODE),
        ["node.kubernetes.io/not-ready", "dedicated"]
    );
    assert_eq!(api.taint_keys("ip-10-0-1-8"), [KEY], "only its own node");
    let after = api.get(NODES, NODE).expect("the node");
    assert_eq!(after["metadata"]["labels"], before["metadata"]["labels"]);
    assert_eq!(after["spec"]["providerID"], before["spec"]["providerID"]);

    let patches = api.patches();
    assert_eq!(patches.len(), 1);
    let patch = &patches[0];
    assert_eq!(patch.path, format!("/api/v1/nodes/{NODE}"));
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/json-patch+json")
    );
    // The test guards against clobbering what changed since the GET.
    assert_eq!(
        patch.body,
        json!([
            {"op": "test", "path": "/spec/taints", "value": before["spec"]["taints"]},
            {"op": "replace", "path": "/spec/taints", "value": [
                {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"},
                {"key": "dedicated", "effect": "NoExecute"},
            ]},
        ])
    );
}

#[tokio::test]
async fn every_effect_of_the_key_goes_and_the_list_may_end_empty() {
    let api = FakeApi::start();
    api.node(NODE, &[(KEY, "NoSchedule"), (KEY, "NoExecute")]);
    assert_eq!(remove(&api).await, Outcome::Removed);
    assert!(api.taint_keys(NODE).is_empty());
    assert_eq!(
        api.get(NODES, NODE).expect("the node")["spec"]["taints"],
        json!([])
    );
}

#[tokio::test]
async fn without_the_taint_nothing_is_patched() {
    let api = FakeApi::start();
    api.node(NODE, &[("dedicated", "NoSchedule")]);
    assert_eq!(remove(&api).await, Outcome::Absent);
    api.node("untainted", &[]);
    let token = CancellationToken::new();
    assert_eq!(
        remove_taint(api.client(), "untainted", KEY, FAST, &token).await,
        Outcome::Absent
    );
    assert!(api.patches().is_empty(), "{:?}", api.patches());
    assert_eq!(api.taint_keys(NODE), ["dedicated"]);
}

#[tokio::test]
async fn a_conflict_is_retried_from_a_fresh_read() {
    let api = FakeApi::start();
    api.node(NODE, &[(KEY, "NoSchedule"), ("dedicated", "NoSchedule")]);
    api.conflict_next_patches(2);
    assert_eq!(remove(&api).await, Outcome::Removed);
    assert_eq!(api.taint_keys(NODE), ["dedicated"]);
    let statuses: Vec<(Method, u16)> = api
        .seen()
        .into_iter()
        .map(|s| (s.method, s.status))
        .collect();
    assert_eq!(
        statuses,
        [
            (Method::GET, 200),
            (Method::PATCH, 409),
            (Method::GET, 200),
            (Method::PATCH, 409),
            (Method::GET, 200),
            (Method::PATCH, 200),
        ]
    );
}

#[tokio::test]
async fn a_taint_added_meanwhile_is_not_clobbered() {
    let api = FakeApi::start();
    api.node(NODE, &[(KEY, "NoSchedule")]);
    // Between the agent's GET and its PATCH, the node lifecycle controller taints the node.
    api.after_next_get(|node| {
        node["spec"]["taints"]
            .as_array_mut()
            .expect("taints")
            .push(json!({"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}));
    });
    assert_eq!(remove(&api).await, Outcome::Removed);
    assert_eq!(api.taint_keys(NODE), ["node.kubernetes.io/unreachable"]);
    let statuses: Vec<u16> = api.patches().iter().map(|s| s.status).collect();
    assert_eq!(
        statuses,
        [422, 200],
        "the stale test fails, then a fresh patch"
    );
}

#[tokio::test]
async fn errors_back_off_and_cancellation_stops_the_retries() {
    let api = FakeApi::start();
    api.node(NODE, &[(KEY, "NoSchedule")]);
    api.fail_next_gets(3);
    assert_eq!(remove(&api).await, Outcome::Removed);
    assert!(api.taint_keys(NODE).is_empty());

    // A node that does not exist: retried until the agent stops.
    let token = CancellationToken::new();
    let task = tokio::spawn({
        let (client, token) = (api.client(), token.clone());
        async move { remove_taint(client, "no-such-node", KEY, FAST, &token).await }
    });
    tokio::time::timeout(DEADLINE, async {
        while api
            .seen()
            .iter()
            .filter(|s| s.path.ends_with("/no-such-node"))
            .count()
            < 3
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("retries");
    token.cancel();
    let outcome = tokio::time::timeout(DEADLINE, task)
        .await
        .expect("stops when cancelled")
        .expect("no panic");
    assert_eq!(outcome, Outcome::Cancelled);
}
