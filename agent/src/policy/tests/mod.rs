//! The policy watch and merge against a fake API server that speaks list, watch and status
//! patches; the merge and validation rules on their own.

mod merge;

use std::{path::Path, sync::Arc, time::Duration};

use futures::FutureExt as _;
use serde_json::{Value, json};
use tokio::{sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::ImdsMode;
use crate::kube::fake_api::{self, FakeApi, NODES, POLICIES};

const NODE: &str = "node-a";
/// Generous: a reconnect waits out kube-rs's backoff (0.8 s doubling, with jitter).
const DEADLINE: Duration = Duration::from_mins(1);

/// The configuration file: IMDS enforced, `k8s-client-in-container` disabled.
pub fn base() -> Config {
    let text = "collector:\n  endpoint: http://127.0.0.1:1\n  tls: disabled\nrules:\n  disabled: [k8s-client-in-container]\n";
    nodeward_runtime::config::parse(Path::new("agent.yaml"), text).expect("a valid config")
}

fn node(labels: &Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE, "labels": labels}})
}

pub fn policy(name: &str, spec: &Value) -> Value {
    json!({
        "apiVersion": "nodeward.io/v1alpha1", "kind": "NodeHardeningPolicy",
        "metadata": {"name": name, "uid": format!("uid-{name}")},
        "spec": spec,
    })
}

struct Running {
    effective: Effective,
    token: CancellationToken,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
    /// Keeps the file's channel open.
    _file: watch::Sender<Arc<Config>>,
}

impl Running {
    fn start(api: &FakeApi) -> Self {
        let token = CancellationToken::new();
        let (file_tx, file) = watch::channel(Arc::new(base()));
        let client = api.client();
        let (cluster, watch_task) = watch_cluster(client.clone(), NODE, token.clone());
        let (effective, apply_task) =
            apply(file, cluster, Some(kube::Api::all(client)), token.clone());
        Self {
            effective,
            token,
            tasks: vec![tokio::spawn(watch_task), tokio::spawn(apply_task)],
            _file: file_tx,
        }
    }

    /// Waits until the effective configuration satisfies `check`.
    async fn wait_for(&mut self, what: &str, check: impl Fn(&Config) -> bool) -> Arc<Config> {
        let waited = tokio::time::timeout(
            DEADLINE,
            self.effective
                .config
                .wait_for(|c| check(c))
                .map(|r| r.map(|c| c.clone())),
        )
        .await;
        match waited {
            Ok(Ok(config)) => config,
            Ok(Err(_)) => panic!("the effective configuration is no longer published"),
            Err(_) => {
                let now = self.effective.config.borrow().imds.clone();
                panic!("waiting for {what}; the effective configuration is {now:?}")
            }
        }
    }

    fn generation(&self) -> Option<String> {
        self.effective.generation.borrow().clone()
    }

    async fn stop(self) {
        self.token.cancel();
        for task in self.tasks {
            tokio::time::timeout(DEADLINE, task)
                .await
                .expect("the task ends when cancelled")
                .expect("the task did not panic")
                .expect("the task ends with Ok");
        }
    }
}

/// Waits until the fake holds a status condition on `name` satisfying `check`.
async fn wait_for_condition(api: &FakeApi, name: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let condition = api
            .get(POLICIES, name)
            .and_then(|p| p["status"]["conditions"].get(0).cloned());
        if let Some(condition) = condition.filter(|c| check(c)) {
            return condition;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no matching status condition on {name}: {:?}",
            api.get(POLICIES, name)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_policy_selecting_the_node_changes_the_imds_mode_live() {
    let api = FakeApi::start();
    api.apply(NODES, node(&json!({"pool": "web"})));
    api.apply(
        POLICIES,
        policy(
            "elsewhere",
            &json!({"nodeSelector": {"matchLabels": {"pool": "gpu"}}, "imds": {"mode": "off"}}),
        ),
    );
    let mut running = Running::start(&api);
    // The non-selecting policy is judged (and accepted) without being applied.
    wait_for_condition(&api, "elsewhere", |c| c["status"] == "True").await;
    assert_eq!(
        running.effective.config.borrow().imds.mode,
        ImdsMode::Enforce
    );
    assert_eq!(running.generation(), None);

    api.apply(
        POLICIES,
        policy(
            "web-audit",
            &json!({"nodeSelector": {"matchLabels": {"pool": "web"}}, "imds": {"mode": "audit"}}),
        ),
    );
    running
        .wait_for("audit", |c| c.imds.mode == ImdsMode::Audit)
        .await;
    assert_eq!(running.generation().as_deref(), Some("web-audit:1"));

    // The node is relabelled into the other pool: the policies swap.
    api.apply(NODES, node(&json!({"pool": "gpu"})));
    running
        .wait_for("off", |c| c.imds.mode == ImdsMode::Off)
        .await;
    assert_eq!(running.generation().as_deref(), Some("elsewhere:1"));

    api.delete(POLICIES, "elsewhere");
    running
        .wait_for("the file's mode", |c| c.imds.mode == ImdsMode::Enforce)
        .await;
    assert_eq!(running.generation(), None);
    running.stop().await;
}

#[tokio::test]
async fn two_policies_merge_by_priority_then_name() {
    let api = FakeApi::start();
    api.apply(NODES, node(&json!({"pool": "web"})));
    api.apply(
        POLICIES,
        policy(
            "broad",
            &json!({"priority": 0, "imds": {"mode": "audit", "blockedCidrs": ["169.254.170.2/32"],
                "allow": [{"namespace": "kube-system", "serviceAccount": "aws-node"}]},
                "rules": {"disabled": ["shell-in-container"]}}),
        ),
    );
    api.apply(
        POLICIES,
        policy(
            "narrow",
            &json!({"priority": 10, "nodeSelector": {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["web"]}]},
                "imds": {"mode": "off"},
                "rules": {"enabled": ["shell-in-container", "k8s-client-in-container"],
                    "exceptions": {"reverse-shell": [{"namespace": ["debug"]}]}}}),
        ),
    );
    let mut running = Running::start(&api);
    let config = running
        .wait_for("both policies", |c| c.imds.blocked_cidrs.len() == 3)
        .await;
    assert_eq!(config.imds.mode, ImdsMode::Audit, "the strictest mode wins");
    assert_eq!(config.imds.allow.len(), 1);
    assert!(
        config.rules.disabled.is_empty(),
        "the higher priority enables what the file and the lower priority disabled: {:?}",
        config.rules.disabled
    );
    assert_eq!(config.rules.exceptions["reverse-shell"].len(), 1);
    assert_eq!(running.generation().as_deref(), Some("broad:1,narrow:1"));
    running.stop().await;
}

#[tokio::test]
async fn an_invalid_policy_is_rejected_whole_with_a_status_condition() {
    let api = FakeApi::start();
    api.apply(NODES, node(&json!({"pool": "web"})));
    api.apply(
        POLICIES,
        policy("good", &json!({"imds": {"blockedCidrs": ["10.1.2.3/32"]}})),
    );
    let mut running = Running::start(&api);
    let before = running
        .wait_for("the good policy", |c| c.imds.blocked_cidrs.len() == 3)
        .await;
    wait_for_condition(&api, "good", |c| {
        c["status"] == "True" && c["reason"] == "Valid"
    })
    .await;

    // A valid mode, but a bad CIDR and an unknown rule: nothing of it may apply.
    api.apply(
        POLICIES,
        policy(
            "bad",
            &json!({"imds": {"mode": "off", "blockedCidrs": ["10.0.0.0/33"]},
                "rules": {"exceptions": {"no-such-rule": [{"namespace": ["x"]}]}}}),
        ),
    );
    let condition = wait_for_condition(&api, "bad", |c| c["status"] == "False").await;
    assert_eq!(condition["type"], "Accepted");
    assert_eq!(condition["reason"], "Invalid");
    assert_eq!(condition["observedGeneration"], 1);
    let message = condition["message"].as_str().unwrap();
    assert!(
        message.contains("spec.imds.blockedCidrs[0]") && message.contains("10.0.0.0/33"),
        "{message}"
    );
    let patch = api
        .patches()
        .into_iter()
        .find(|p| p.path == format!("{POLICIES}/bad/status"))
        .expect("a status patch");
    assert_eq!(patch.body["status"]["conditions"][0]["reason"], "Invalid");
    assert_eq!(
        *running.effective.config.borrow(),
        before,
        "nothing half-applied"
    );
    assert_eq!(running.generation().as_deref(), Some("good:1"));

    // Fixed: accepted and applied.
    api.apply(POLICIES, policy("bad", &json!({"imds": {"mode": "off"}})));
    running
        .wait_for("the fixed policy", |c| c.imds.mode == ImdsMode::Off)
        .await;
    wait_for_condition(&api, "bad", |c| {
        c["status"] == "True" && c["observedGeneration"] == 2
    })
    .await;
    running.stop().await;
}

#[tokio::test]
async fn the_last_policies_stay_while_the_api_is_away() {
    let mut api = FakeApi::start();
    api.apply(NODES, node(&json!({"pool": "web"})));
    api.apply(
        POLICIES,
        policy("audit", &json!({"imds": {"mode": "audit"}})),
    );
    let mut running = Running::start(&api);
    let before = running
        .wait_for("audit", |c| c.imds.mode == ImdsMode::Audit)
        .await;

    api.stop().await;
    // Something on the port that hangs up on every connection: the watchers' reconnects.
    let listener = fake_api::bind(api.addr());
    let attempts = tokio::time::timeout(DEADLINE, async {
        for _ in 0..4 {
            drop(listener.accept().await.expect("a reconnect attempt"));
        }
    })
    .await;
    attempts.expect("the watchers keep trying to reconnect");
    drop(listener);
    assert!(
        running.tasks.iter().all(|t| !t.is_finished()),
        "the tasks keep running"
    );
    assert_eq!(
        *running.effective.config.borrow(),
        before,
        "the last policies stay"
    );
    assert_eq!(running.generation().as_deref(), Some("audit:1"));

    // Changed while the agent could not see it, then the API server is back.
    api.apply(POLICIES, policy("audit", &json!({"imds": {"mode": "off"}})));
    api.restart();
    running
        .wait_for("off", |c| c.imds.mode == ImdsMode::Off)
        .await;
    assert_eq!(running.generation().as_deref(), Some("audit:2"));
    running.stop().await;
}
