//! The startup taint. Nodes register with `nodeward.io/agent-not-ready:NoSchedule`, so the
//! scheduler places no ordinary pod on them while pods could still reach the instance
//! metadata service; once IMDS enforcement is attached the agent removes the taint from
//! its own Node, the way Cilium's agent removes `node.cilium.io/agent-not-ready`.
//!
//! - GET the Node; if no taint has the key, there is nothing to do (and no PATCH).
//! - Otherwise PATCH it with a JSON patch that first `test`s `/spec/taints` against the
//!   list just read, then `replace`s it with the same list minus the taints with the key.
//!   A concurrent change to the taints (the node lifecycle controller adding
//!   `not-ready`, an admin cordoning) makes the `test` fail (422) or the write conflict
//!   (409); the agent reads the Node again and retries, so it never clobbers a taint it
//!   did not read and never touches any taint but its own.
//! - Other errors (API unreachable, 403 while RBAC is being applied, 5xx) are retried with
//!   a capped, jittered exponential backoff until the taint is gone or the agent stops: a
//!   node that keeps its taint stays unschedulable, so giving up is never right.
//!
//! RBAC cannot restrict `patch` on `nodes` to the agent's own Node (resourceNames are
//! fixed strings); deploy/base/agent-admission-policy.yaml does, with a
//! `ValidatingAdmissionPolicy` that lets the agent change only its own Node's startup taint.

use std::time::Duration;

use k8s_openapi::{
    api::core::v1::{Node, Taint},
    serde_json::{self, json},
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    config::{Config, PodSource, StartupTaintConfig},
    supervisor::Supervisor,
};

/// How long to wait between attempts: doubling from `initial` up to `max`, plus up to a
/// quarter of jitter so that a fleet of agents restarted together spreads out.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

/// What [`remove_taint`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The taint was there and is gone.
    Removed,
    /// The Node had no taint with the key.
    Absent,
    /// The agent is stopping; the taint may still be there.
    Cancelled,
}

/// Spawns the removal of the startup taint from `node`, when the config asks for it and
/// the agent has a Kubernetes client (`pods.source: kubernetes`, in a cluster). Called
/// once IMDS enforcement is attached.
pub fn spawn_startup_taint_removal(config: &Config, node: &str, supervisor: &Supervisor) {
    let StartupTaintConfig { remove, key } = config.startup_taint.clone();
    if !remove || config.pods.source() != PodSource::Kubernetes {
        debug!(remove, "startup taint left alone");
        return;
    }
    let node = node.to_owned();
    let token = supervisor.token().clone();
    supervisor.spawn("startup-taint", async move {
        match super::in_cluster_client().await {
            Ok(client) => {
                remove_taint(client, &node, &key, Backoff::default(), &token).await;
            }
            // Already reported by the pod watch, which needs the same client.
            Err(err) => debug!(
                error = format!("{err:#}"),
                "no client: startup taint left alone"
            ),
        }
        Ok(())
    });
}

/// Removes every taint with `key` from `node`, retrying until it is done or `token` is
/// cancelled.
pub async fn remove_taint(
    client: Client,
    node: &str,
    key: &str,
    backoff: Backoff,
    token: &CancellationToken,
) -> Outcome {
    let nodes: Api<Node> = Api::all(client);
    let mut delay = backoff.initial;
    loop {
        let wait = match attempt(&nodes, node, key).await {
            Ok(outcome) => {
                match outcome {
                    Outcome::Removed => info!(node, taint = key, "startup taint removed"),
                    Outcome::Absent => info!(node, taint = key, "node has no startup taint"),
                    Outcome::Cancelled => {}
                }
                return outcome;
            }
            Err(Failure::Raced(why)) => {
                // Somebody else changed the taints; read them again at once, but do not
                // spin if they keep changing.
                debug!(node, why, "node taints changed under the patch; retrying");
                delay = backoff.initial;
                backoff.initial
            }
            Err(Failure::Other(err)) => {
                warn!(node, taint = key, error = %err, retry_in = ?delay, "removing the startup taint failed");
                let wait = jitter(delay);
                delay = (delay * 2).min(backoff.max);
                wait
            }
        };
        tokio::select! {
            () = token.cancelled() => return Outcome::Cancelled,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

enum Failure {
    /// The taints changed between the GET and the PATCH (409, or 422 from the `test`).
    Raced(String),
    Other(kube::Error),
}

async fn attempt(nodes: &Api<Node>, node: &str, key: &str) -> Result<Outcome, Failure> {
    let current = nodes.get(node).await.map_err(Failure::Other)?;
    let taints: Vec<Taint> = current
        .spec
        .and_then(|spec| spec.taints)
        .unwrap_or_default();
    let Some(patch) = removal_patch(&taints, key) else {
        return Ok(Outcome::Absent);
    };
    match nodes.patch(node, &PatchParams::default(), &patch).await {
        Ok(_) => Ok(Outcome::Removed),
        Err(kube::Error::Api(status)) if status.code == 409 || status.code == 422 => {
            Err(Failure::Raced(status.message))
        }
        Err(err) => Err(Failure::Other(err)),
    }
}

/// The JSON patch that removes the taints with `key` from `taints` (the Node's current
/// list), or `None` when none has it.
pub fn removal_patch(taints: &[Taint], key: &str) -> Option<Patch<()>> {
    let kept: Vec<&Taint> = taints.iter().filter(|t| t.key != key).collect();
    if kept.len() == taints.len() {
        return None;
    }
    let ops = json!([
        {"op": "test", "path": "/spec/taints", "value": taints},
        {"op": "replace", "path": "/spec/taints", "value": kept},
    ]);
    Some(Patch::Json(
        serde_json::from_value(ops).expect("a well-formed JSON patch"),
    ))
}

fn jitter(delay: Duration) -> Duration {
    let quarter = u64::try_from(delay.as_millis() / 4).unwrap_or(u64::MAX);
    delay + Duration::from_millis(rand::random_range(0..=quarter))
}
