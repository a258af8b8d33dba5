//! The `Accepted` condition on a policy's status subresource.
//!
//! Every agent judges every policy the same way (validation does not depend on the node),
//! so each agent writes the condition only when the one already there says something
//! else: the first agent to see a new generation writes it, the others find it written.

use kube::{
    Api,
    api::{Patch, PatchParams},
};
use nodeward_crd::{
    CONDITION_ACCEPTED, NodeHardeningPolicy, PolicyCondition, REASON_INVALID, REASON_VALID,
};
use serde_json::json;

use super::validate::{Accepted, Invalid};

/// The condition the verdict on `policy` calls for; `None` when the one it has already
/// says so (for this generation).
pub fn wanted(
    policy: &NodeHardeningPolicy,
    verdict: &Result<Accepted, Invalid>,
) -> Option<PolicyCondition> {
    let (status, reason, message) = match verdict {
        Ok(_) => ("True", REASON_VALID, String::new()),
        Err(invalid) => ("False", REASON_INVALID, invalid.to_string()),
    };
    let current = policy.status.as_ref().and_then(|s| s.accepted());
    let generation = policy.metadata.generation;
    if current.is_some_and(|c| {
        c.status == status
            && c.reason == reason
            && c.message == message
            && c.observed_generation == generation
    }) {
        return None;
    }
    // The time the status last flipped, as metav1.Condition defines it.
    let last_transition_time = match current {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Some(
            jiff::Timestamp::now()
                .round(jiff::Unit::Second)
                .ok()?
                .to_string(),
        ),
    };
    Some(PolicyCondition {
        type_: CONDITION_ACCEPTED.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time,
    })
}

/// Writes `condition` with a JSON merge patch on the status subresource (the agent's RBAC
/// grants `patch` on `nodehardeningpolicies/status` only). The merge patch replaces the
/// whole `conditions` list, which holds this one condition type only.
pub async fn report(
    api: &Api<NodeHardeningPolicy>,
    name: &str,
    condition: &PolicyCondition,
) -> Result<(), kube::Error> {
    let patch = json!({"status": {"conditions": [condition]}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(drop)
}
