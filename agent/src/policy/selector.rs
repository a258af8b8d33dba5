//! `spec.nodeSelector`, parsed once so that matching cannot fail.

use std::collections::BTreeMap;

use nodeward_crd::NodeSelector;

/// A parsed label selector; the empty selector matches every node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    labels: BTreeMap<String, String>,
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Selector {
    /// Parses `spec.nodeSelector`, following `metav1.LabelSelector`'s rules: `In` and
    /// `NotIn` need values, `Exists` and `DoesNotExist` take none.
    pub fn parse(selector: Option<&NodeSelector>) -> Result<Self, String> {
        let Some(selector) = selector else {
            return Ok(Self::default());
        };
        let mut requirements = Vec::with_capacity(selector.match_expressions.len());
        for (i, expr) in selector.match_expressions.iter().enumerate() {
            let at = format!("spec.nodeSelector.matchExpressions[{i}]");
            if expr.key.is_empty() {
                return Err(format!("{at}.key: must not be empty"));
            }
            let (key, values) = (expr.key.clone(), expr.values.clone());
            let requirement = match (expr.operator.as_str(), values.is_empty()) {
                ("In", false) => Requirement::In(key, values),
                ("NotIn", false) => Requirement::NotIn(key, values),
                ("Exists", true) => Requirement::Exists(key),
                ("DoesNotExist", true) => Requirement::DoesNotExist(key),
                ("In" | "NotIn", true) => {
                    return Err(format!("{at}.values: required for {}", expr.operator));
                }
                ("Exists" | "DoesNotExist", false) => {
                    return Err(format!("{at}.values: must be empty for {}", expr.operator));
                }
                (other, _) => {
                    return Err(format!(
                        "{at}.operator: unknown operator {other:?} (In, NotIn, Exists, DoesNotExist)"
                    ));
                }
            };
            requirements.push(requirement);
        }
        Ok(Self {
            labels: selector.match_labels.clone(),
            requirements,
        })
    }

    /// Whether a node with these labels is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.requirements.iter().all(|r| match r {
                Requirement::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
                Requirement::NotIn(key, values) => {
                    labels.get(key).is_none_or(|v| !values.contains(v))
                }
                Requirement::Exists(key) => labels.contains_key(key),
                Requirement::DoesNotExist(key) => !labels.contains_key(key),
            })
    }
}

#[cfg(test)]
mod tests {
    use nodeward_crd::LabelRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn expr(key: &str, operator: &str, values: &[&str]) -> LabelRequirement {
        LabelRequirement {
            key: key.into(),
            operator: operator.into(),
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    fn selector(match_labels: &[(&str, &str)], exprs: Vec<LabelRequirement>) -> Selector {
        Selector::parse(Some(&NodeSelector {
            match_labels: labels(match_labels),
            match_expressions: exprs,
        }))
        .expect("a valid selector")
    }

    #[test]
    fn matches_like_a_label_selector() {
        let node = labels(&[("pool", "gpu"), ("zone", "a")]);
        assert!(Selector::parse(None).unwrap().matches(&node));
        assert!(selector(&[("pool", "gpu")], vec![]).matches(&node));
        assert!(!selector(&[("pool", "cpu")], vec![]).matches(&node));
        assert!(selector(&[], vec![expr("zone", "In", &["a", "b"])]).matches(&node));
        assert!(!selector(&[], vec![expr("zone", "NotIn", &["a"])]).matches(&node));
        assert!(selector(&[], vec![expr("spot", "NotIn", &["true"])]).matches(&node));
        assert!(selector(&[], vec![expr("pool", "Exists", &[])]).matches(&node));
        assert!(!selector(&[], vec![expr("pool", "DoesNotExist", &[])]).matches(&node));
    }

    #[test]
    fn malformed_requirements_are_named() {
        for (bad, says) in [
            (expr("a", "Has", &[]), "unknown operator \"Has\""),
            (expr("a", "In", &[]), "values: required for In"),
            (expr("a", "Exists", &["x"]), "values: must be empty"),
            (expr("", "Exists", &[]), "key: must not be empty"),
        ] {
            let err = Selector::parse(Some(&NodeSelector {
                match_labels: BTreeMap::new(),
                match_expressions: vec![bad],
            }))
            .unwrap_err();
            assert!(
                err.starts_with("spec.nodeSelector.matchExpressions[0].") && err.contains(says),
                "{err}"
            );
        }
    }
}
