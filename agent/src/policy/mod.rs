//! `NodeHardeningPolicy` (`nodeward.io/v1alpha1`, cluster-scoped; types in `nodeward-crd`):
//! the policies that select this node, merged over the configuration file and published
//! as the effective configuration on the same `watch::Receiver<Arc<Config>>` the modules
//! read, so IMDS enforcement and the rules follow policy changes live.
//!
//! # Which policies apply
//! A policy applies when it is valid and its `nodeSelector` (a label selector; left out,
//! every node) matches this node's labels, read from the Node object named `nodeName`.
//! Until the Node has been read, none applies.
//!
//! # Validation
//! A policy is checked whole against the configuration file before it is used: selector
//! operators, the IMDS mode, every CIDR, every allow entry, every rule id (built-in or a
//! custom rule of the file) in `disabled`, `enabled` and `exceptions`, every exception's
//! conditions, an id both enabled and disabled, and the file's limits with the policy
//! applied. Any problem rejects the whole policy (it is never half-applied): the agent logs
//! it and sets the policy's `Accepted` condition to `False` (reason `Invalid`, every
//! problem in the message); a valid policy gets `Accepted=True`. An invalid edit of a
//! policy that was valid takes the policy out: every agent judges the object as it is now,
//! so nodes never disagree on what a policy means after an agent restart.
//!
//! # How policies merge
//! Selected policies are ordered by `priority` (ascending), then by name, and applied in
//! that order over the configuration file:
//! - `imds.mode`: when any selected policy sets a mode, the strictest of them wins
//!   (`enforce` > `audit` > `off`), whatever the priorities, so no policy can weaken what
//!   another enforces; when none sets one, the file's mode stays.
//! - `imds.blockedCidrs` and `imds.allow`: the union of the file's and every policy's.
//! - `rules.disabled` / `rules.enabled`: starting from the file's disabled rules, each
//!   policy in order removes the ids it enables and adds the ids it disables, so the
//!   higher priority wins a conflict (by name for equal priorities).
//! - `rules.exceptions`: the union, per rule id.
//!
//! Policies valid alone can exceed a whole-configuration limit together (blocked prefixes
//! per address family): the one that would is left out on this node, with a warning.
//!
//! The posture snapshot reports `name:generation,...` of the applied policies, in merge
//! order. While the API is unreachable, the last known policies and labels stay in force.

mod apply;
mod merge;
pub mod posture;
mod selector;
mod status;
mod validate;
mod watch;

use std::sync::Arc;

use anyhow::Context as _;
use kube::Api;
use serde::Deserialize;
use tokio::sync::watch as channel;
use tracing::info;

pub use self::{
    apply::{Effective, apply},
    watch::watch_cluster,
};
use crate::{
    config::{Config, PodSource},
    supervisor::Supervisor,
};

/// The config's `policies:` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PoliciesConfig {
    /// Merge the `NodeHardeningPolicy` objects that select this node over this file. Default: on
    /// when the Kubernetes API can be reached (in a cluster), off when `pods.source` is
    /// `file`; `true` makes a missing API configuration an error at start.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// Starts the policy watch when the config asks for it (see [`PoliciesConfig`]); returns
/// the effective configuration, which is `file` itself when policies are off.
pub async fn start(
    file: channel::Receiver<Arc<Config>>,
    node_name: &str,
    supervisor: &Supervisor,
) -> anyhow::Result<Effective> {
    let (enabled, source) = {
        let config = file.borrow();
        (config.policies.enabled, config.pods.source())
    };
    let off = |why: &str| {
        info!(why, "NodeHardeningPolicies are not applied");
        Effective {
            config: file.clone(),
            generation: channel::channel(None).1,
        }
    };
    let client = match (enabled, source) {
        (Some(false), _) => return Ok(off("policies.enabled is false")),
        (None, PodSource::File) => return Ok(off("pods.source is file")),
        (Some(true), _) => crate::kube::in_cluster_client()
            .await
            .context("policies.enabled is true")?,
        (None, _) => match crate::kube::in_cluster_client().await {
            Ok(client) => client,
            Err(_) => return Ok(off("no Kubernetes API configuration")),
        },
    };
    let token = supervisor.token().clone();
    let (cluster, watch_task) = watch_cluster(client.clone(), node_name, token.clone());
    supervisor.spawn("policies-kubernetes", watch_task);
    let (effective, apply_task) = apply(file, cluster, Some(Api::all(client)), token);
    supervisor.spawn("policies-apply", apply_task);
    Ok(effective)
}

#[cfg(test)]
mod tests;
