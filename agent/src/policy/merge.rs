//! Policies merged over the configuration file; the rules are in the module docs.

use std::cmp::Reverse;

use nodeward_runtime::config::Validate as _;
use tracing::warn;

use super::validate::Accepted;
use crate::config::{Config, ImdsMode};

/// The effective configuration and what it was made from.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    pub config: Config,
    /// The policies applied, in merge order.
    pub applied: Vec<(String, i64)>,
}

impl Merged {
    /// `name:generation,...` in merge order, or `None` when no policy applies: what the
    /// posture snapshot reports as the policy generation this node enforces.
    pub fn generation(&self) -> Option<String> {
        (!self.applied.is_empty()).then(|| {
            self.applied
                .iter()
                .map(|(name, generation)| format!("{name}:{generation}"))
                .collect::<Vec<_>>()
                .join(",")
        })
    }
}

/// How strict a mode is: the merged mode is the strictest any selected policy sets.
fn strictness(mode: ImdsMode) -> Reverse<u8> {
    Reverse(match mode {
        ImdsMode::Enforce => 0,
        ImdsMode::Audit => 1,
        ImdsMode::Off => 2,
    })
}

/// `policies` (already validated and selected) over `base`, in the documented order.
pub fn merge(base: &Config, policies: &[&Accepted]) -> Merged {
    let mut ordered = policies.to_vec();
    ordered.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
    let mut config = base.clone();
    let imds = &mut config.imds;
    if let Some(mode) = ordered
        .iter()
        .filter_map(|p| p.settings.mode)
        .max_by_key(|m| strictness(*m))
    {
        imds.mode = mode;
    }
    let rules = &mut config.rules;
    for policy in &ordered {
        let settings = &policy.settings;
        for cidr in &settings.blocked_cidrs {
            if !imds.blocked_cidrs.contains(cidr) {
                imds.blocked_cidrs.push(*cidr);
            }
        }
        for rule in &settings.allow {
            if !imds.allow.contains(rule) {
                imds.allow.push(rule.clone());
            }
        }
        // Later (higher priority) policies win: an enable undoes an earlier disable and
        // a disable undoes an earlier enable.
        rules.disabled.retain(|id| !settings.enabled.contains(id));
        for id in &settings.disabled {
            if !rules.disabled.contains(id) {
                rules.disabled.push(id.clone());
            }
        }
        for (id, sets) in &settings.exceptions {
            let list = rules.exceptions.entry(id.clone()).or_default();
            for set in sets {
                if !list.contains(set) {
                    list.push(set.clone());
                }
            }
        }
    }
    Merged {
        config,
        applied: ordered
            .iter()
            .map(|p| (p.name.clone(), p.generation))
            .collect(),
    }
}

/// Merges as many of `policies` as fit: each was valid alone over the file, but together
/// they may break a whole-configuration limit (more blocked prefixes than the kernel map
/// holds). Policies are added in merge order and one that would make the result invalid is
/// left out on this node, with a warning, so the result is always a valid configuration.
pub fn merge_fitting(base: &Config, policies: &[&Accepted]) -> Merged {
    let mut ordered = policies.to_vec();
    ordered.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
    let mut kept: Vec<&Accepted> = Vec::with_capacity(ordered.len());
    for policy in ordered {
        kept.push(policy);
        if let Err(err) = merge(base, &kept).config.validate() {
            kept.pop();
            warn!(policy = policy.name, error = %err, "policy left out on this node: with the policies before it the configuration would be invalid");
        }
    }
    merge(base, &kept)
}
