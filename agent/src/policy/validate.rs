//! A policy as written → settings the merge can use, or every reason it is rejected.

use std::collections::BTreeMap;

use ipnet::IpNet;
use nodeward_crd::{AllowEntry, NodeHardeningPolicy, RuleConditions};
use nodeward_runtime::config::Validate as _;

use super::{merge, selector::Selector};
use crate::{
    config::{AllowRule, Config, ImdsMode},
    rules::{
        RuleSet,
        spec::{Conditions, RulesConfig},
    },
};

/// Why a policy was rejected whole: every problem found, each naming its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("; "))]
pub struct Invalid {
    pub problems: Vec<String>,
}

/// A policy that passed validation, in the agent's own types.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub name: String,
    /// `metadata.generation`: reported in posture as what this node enforces.
    pub generation: i64,
    pub priority: i32,
    pub selector: Selector,
    pub settings: Settings,
}

/// What a policy changes, parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub mode: Option<ImdsMode>,
    pub blocked_cidrs: Vec<IpNet>,
    pub allow: Vec<AllowRule>,
    pub disabled: Vec<String>,
    pub enabled: Vec<String>,
    pub exceptions: BTreeMap<String, Vec<Conditions>>,
}

/// Parses and checks `policy`, alone over `base` (the configuration file, which holds the
/// custom rules a policy may name): a policy is accepted only if the agent's configuration
/// with it applied would be valid.
pub fn accept(policy: &NodeHardeningPolicy, base: &Config) -> Result<Accepted, Invalid> {
    let mut problems = Vec::new();
    let spec = &policy.spec;
    let selector = ok(&mut problems, Selector::parse(spec.node_selector.as_ref()));
    let imds = spec.imds.clone().unwrap_or_default();
    let mode = ok(
        &mut problems,
        imds.mode.as_deref().map(parse_mode).transpose(),
    );
    let blocked_cidrs = imds
        .blocked_cidrs
        .iter()
        .enumerate()
        .filter_map(|(i, cidr)| {
            ok(
                &mut problems,
                parse_cidr(&format!("spec.imds.blockedCidrs[{i}]"), cidr),
            )
        })
        .collect();
    let allow = imds
        .allow
        .iter()
        .enumerate()
        .filter_map(|(i, entry)| ok(&mut problems, allow_rule(i, entry)))
        .collect();
    let rules = spec.rules.clone().unwrap_or_default();
    let mut exceptions = BTreeMap::new();
    for (id, sets) in &rules.exceptions {
        let converted: Vec<Conditions> = sets
            .iter()
            .enumerate()
            .filter_map(|(i, set)| {
                ok(
                    &mut problems,
                    conditions(&format!("spec.rules.exceptions.{id}[{i}]"), set),
                )
            })
            .collect();
        exceptions.insert(id.clone(), converted);
    }
    for id in rules
        .enabled
        .iter()
        .filter(|id| rules.disabled.contains(id))
    {
        problems.push(format!("spec.rules: {id:?} is both enabled and disabled"));
    }
    let settings = Settings {
        mode: mode.flatten(),
        blocked_cidrs,
        allow,
        disabled: rules.disabled,
        enabled: rules.enabled,
        exceptions,
    };
    if problems.is_empty() {
        // Rule ids (enabled ones too, which the merge only removes from a list) must
        // name a built-in rule or one of the file's custom rules.
        let named = RulesConfig {
            disabled: [&settings.disabled[..], &settings.enabled[..]].concat(),
            exceptions: settings.exceptions.clone(),
            custom: base.rules.custom.clone(),
        };
        if let Err(err) = RuleSet::build(&named) {
            problems.push(format!("spec.rules: {}", err.trim_start_matches("rules: ")));
        }
    }
    let (Some(selector), true) = (selector, problems.is_empty()) else {
        return Err(Invalid { problems });
    };
    let accepted = Accepted {
        name: policy.metadata.name.clone().unwrap_or_default(),
        generation: policy.metadata.generation.unwrap_or_default(),
        priority: spec.priority,
        selector,
        settings,
    };
    // Limits that hold for the configuration as a whole (prefixes per family, ...).
    merge::merge(base, &[&accepted])
        .config
        .validate()
        .map_err(|e| Invalid {
            problems: vec![format!("applied over the configuration file: {e}")],
        })?;
    Ok(accepted)
}

/// Keeps going past a problem, so the status names every one at once.
fn ok<T>(problems: &mut Vec<String>, result: Result<T, String>) -> Option<T> {
    result.map_err(|e| problems.push(e)).ok()
}

fn parse_mode(mode: &str) -> Result<ImdsMode, String> {
    match mode {
        "enforce" => Ok(ImdsMode::Enforce),
        "audit" => Ok(ImdsMode::Audit),
        "off" => Ok(ImdsMode::Off),
        other => Err(format!(
            "spec.imds.mode: unknown mode {other:?} (enforce, audit, off)"
        )),
    }
}

fn parse_cidr(at: &str, cidr: &str) -> Result<IpNet, String> {
    cidr.parse()
        .map_err(|_| format!("{at}: {cidr:?} is not a CIDR (e.g. 169.254.169.254/32)"))
}

fn allow_rule(i: usize, entry: &AllowEntry) -> Result<AllowRule, String> {
    let rule = AllowRule {
        namespace: entry.namespace.clone(),
        service_account: entry.service_account.clone(),
        pod_labels: entry.pod_labels.clone(),
    };
    if rule == AllowRule::default() {
        return Err(format!(
            "spec.imds.allow[{i}]: give at least one of namespace, serviceAccount, podLabels (an empty entry would allow every pod)"
        ));
    }
    Ok(rule)
}

/// The CRD mirrors the rule language field for field; going through JSON keeps the two
/// in step (a field one has and the other lacks fails here, in tests, not silently).
fn conditions(at: &str, set: &RuleConditions) -> Result<Conditions, String> {
    let value = serde_json::to_value(set).map_err(|e| format!("{at}: {e}"))?;
    let conditions: Conditions = serde_json::from_value(value).map_err(|e| format!("{at}: {e}"))?;
    if conditions.is_empty() {
        return Err(format!(
            "{at}: an empty condition set would match everything"
        ));
    }
    Ok(conditions)
}
