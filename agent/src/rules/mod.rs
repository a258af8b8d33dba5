//! Detection rules: the built-in set (builtin.yaml) and the config's changes to it,
//! compiled once and evaluated on every exec and egress event in the agent.

mod matcher;
pub mod spec;

use std::{collections::HashSet, sync::Arc};

use nodeward_proto::model::Severity;

pub use self::matcher::Subject;
use self::{
    matcher::Matcher,
    spec::{RuleSpec, RulesConfig, Trigger},
};

const BUILTIN: &str = include_str!("builtin.yaml");

/// A rule ready to evaluate.
#[derive(Debug)]
pub struct Rule {
    pub id: String,
    pub title: String,
    pub description: String,
    pub severity: Severity,
    pub techniques: Vec<String>,
    pub on: Trigger,
    matches: Vec<Matcher>,
    except: Vec<Matcher>,
}

impl Rule {
    fn fires(&self, subject: &Subject<'_>) -> bool {
        self.matches.iter().any(|m| m.matches(subject))
            && !self.except.iter().any(|m| m.matches(subject))
    }
}

/// Every enabled rule. Cheap to clone and swap when the config changes.
#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Arc<Vec<Rule>>,
}

impl RuleSet {
    /// The built-in rules with `config` applied; the message names the rule and the field
    /// at fault.
    pub fn build(config: &RulesConfig) -> Result<Self, String> {
        let mut specs: Vec<RuleSpec> =
            serde_saphyr::from_str(BUILTIN).map_err(|e| format!("built-in rules: {e}"))?;
        let builtin_count = specs.len();
        specs.extend(config.custom.iter().cloned());
        let mut ids = HashSet::new();
        for (i, spec) in specs.iter().enumerate() {
            let at = if i < builtin_count {
                format!("built-in rule {}", spec.id)
            } else {
                format!("rules.custom[{}]", i - builtin_count)
            };
            if spec.id.is_empty() || !ids.insert(spec.id.as_str()) {
                return Err(format!("{at}: id {:?} is empty or used twice", spec.id));
            }
            validate(spec).map_err(|e| format!("{at}: {e}"))?;
        }
        for id in config.disabled.iter().chain(config.exceptions.keys()) {
            if !ids.contains(id.as_str()) {
                return Err(format!("rules: no rule has the id {id:?}"));
            }
        }
        let rules = specs
            .into_iter()
            .filter(|spec| !config.disabled.contains(&spec.id))
            .map(|spec| {
                let extra = config.exceptions.get(&spec.id).into_iter().flatten();
                let compile = |c| Matcher::compile(c).map_err(|e| format!("rule {}: {e}", spec.id));
                Ok(Rule {
                    matches: spec
                        .matches
                        .iter()
                        .map(compile)
                        .collect::<Result<_, String>>()?,
                    except: spec
                        .except
                        .iter()
                        .chain(extra)
                        .map(compile)
                        .collect::<Result<_, String>>()?,
                    id: spec.id,
                    title: spec.title,
                    description: spec.description,
                    severity: spec.severity,
                    techniques: spec.techniques,
                    on: spec.on,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            rules: Arc::new(rules),
        })
    }

    /// The rules for `trigger` that fire for `subject`.
    pub fn evaluate<'a>(
        &'a self,
        trigger: Trigger,
        subject: &'a Subject<'_>,
    ) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules
            .iter()
            .filter(move |r| r.on == trigger && r.fires(subject))
    }

    /// Whether any rule looks at `trigger` events.
    pub fn watches(&self, trigger: Trigger) -> bool {
        self.rules.iter().any(|r| r.on == trigger)
    }
}

fn validate(spec: &RuleSpec) -> Result<(), String> {
    if spec.matches.is_empty() || spec.matches.iter().any(spec::Conditions::is_empty) {
        return Err("every `match` entry needs at least one condition".into());
    }
    for (what, conditions) in spec
        .matches
        .iter()
        .map(|c| ("match", c))
        .chain(spec.except.iter().map(|c| ("except", c)))
    {
        let wrong = match spec.on {
            Trigger::Exec => conditions.egress_only(),
            Trigger::Egress => conditions.exec_only(),
        };
        if let Some(field) = wrong.first() {
            return Err(format!(
                "{what}: {field} cannot be judged on {:?} events",
                spec.on
            ));
        }
        Matcher::compile(conditions).map_err(|e| format!("{what}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
