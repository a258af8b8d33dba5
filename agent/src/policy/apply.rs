//! The effective configuration: the file's (from `config_watch`) with the policies that
//! select this node merged over it, republished whenever either changes.

use std::{collections::HashMap, future::Future, sync::Arc};

use kube::Api;
use nodeward_crd::NodeHardeningPolicy;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{
    merge::{Merged, merge_fitting},
    status,
    validate::{Accepted, Invalid, accept},
    watch::ClusterView,
};
use crate::config::Config;

/// What the agent's modules read: the effective configuration, and the policies in it as
/// `name:generation,...` (`None` when none applies) for the posture snapshot.
pub struct Effective {
    pub config: watch::Receiver<Arc<Config>>,
    pub generation: watch::Receiver<Option<String>>,
}

/// Merges `cluster`'s policies over `file`'s configuration; writes each policy's
/// `Accepted` condition through `status` when given. The task returns `Ok` when `token`
/// is cancelled or the file's configuration is no longer published.
pub fn apply(
    mut file: watch::Receiver<Arc<Config>>,
    mut cluster: watch::Receiver<ClusterView>,
    status: Option<Api<NodeHardeningPolicy>>,
    token: CancellationToken,
) -> (Effective, impl Future<Output = anyhow::Result<()>> + Send) {
    let mut judge = Judge::default();
    let first = judge.evaluate(&file.borrow_and_update(), &cluster.borrow_and_update());
    let (config_tx, config) = watch::channel(Arc::new(first.merged.config.clone()));
    let (generation_tx, generation) = watch::channel(first.merged.generation());
    let task = async move {
        let mut pending = first.reports;
        let mut cluster_open = true;
        loop {
            if let Some(api) = &status {
                for (name, condition) in pending.drain(..) {
                    if let Err(err) = status::report(api, &name, &condition).await {
                        warn!(policy = name, error = %err, "could not write the policy's status condition");
                    }
                }
            }
            tokio::select! {
                () = token.cancelled() => return Ok(()),
                changed = file.changed() => if changed.is_err() {
                    return Ok(());
                },
                changed = cluster.changed(), if cluster_open => if changed.is_err() {
                    // The watcher stopped (and the supervisor says why): the last
                    // policies stay in force.
                    cluster_open = false;
                    continue;
                },
            }
            let outcome = judge.evaluate(&file.borrow_and_update(), &cluster.borrow_and_update());
            pending = outcome.reports;
            let merged = outcome.merged;
            if **config_tx.borrow() != merged.config {
                info!(
                    policies = merged.generation().unwrap_or_default(),
                    imds.mode = ?merged.config.imds.mode,
                    "applying the configuration file with the NodeHardeningPolicies that select this node"
                );
                config_tx.send_replace(Arc::new(merged.config.clone()));
            }
            generation_tx.send_if_modified(|current| {
                let next = merged.generation();
                (*current != next).then(|| *current = next).is_some()
            });
        }
    };
    (Effective { config, generation }, task)
}

/// One evaluation: the merged configuration and the status conditions to write.
struct Outcome {
    merged: Merged,
    reports: Vec<(String, nodeward_crd::PolicyCondition)>,
}

/// Validates and merges, logging each rejection once per policy generation.
#[derive(Default)]
struct Judge {
    rejected: HashMap<String, (i64, Invalid)>,
}

impl Judge {
    fn evaluate(&mut self, base: &Config, view: &ClusterView) -> Outcome {
        let verdicts: Vec<(&NodeHardeningPolicy, Result<Accepted, Invalid>)> = view
            .policies
            .values()
            .map(|policy| (policy, accept(policy, base)))
            .collect();
        self.rejected
            .retain(|name, _| view.policies.contains_key(name));
        let mut reports = Vec::new();
        for (policy, verdict) in &verdicts {
            let name = policy.metadata.name.clone().unwrap_or_default();
            if let Err(invalid) = verdict {
                let generation = policy.metadata.generation.unwrap_or_default();
                let seen = (generation, invalid.clone());
                if self.rejected.get(&name) != Some(&seen) {
                    warn!(policy = name, generation, error = %invalid, "NodeHardeningPolicy rejected; it is not applied");
                    self.rejected.insert(name.clone(), seen);
                }
            } else {
                self.rejected.remove(&name);
            }
            if let Some(condition) = status::wanted(policy, verdict) {
                reports.push((name, condition));
            }
        }
        let selected: Vec<&Accepted> = match &view.node_labels {
            Some(labels) => verdicts
                .iter()
                .filter_map(|(_, verdict)| verdict.as_ref().ok())
                .filter(|accepted| accepted.selector.matches(labels))
                .collect(),
            None => Vec::new(),
        };
        Outcome {
            merged: merge_fitting(base, &selected),
            reports,
        }
    }
}
