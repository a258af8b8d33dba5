//! Validation and merge, without an API server.

use serde_json::json;

use super::{base, policy};
use crate::{
    config::ImdsMode,
    policy::{
        merge::{merge, merge_fitting},
        validate::{Accepted, accept},
    },
};

fn accepted(name: &str, spec: &serde_json::Value) -> Accepted {
    let mut object: nodeward_crd::NodeHardeningPolicy =
        serde_json::from_value(policy(name, spec)).expect("a policy");
    object.metadata.generation = Some(1);
    accept(&object, &base()).unwrap_or_else(|e| panic!("{name} rejected: {e}"))
}

fn rejected(spec: &serde_json::Value) -> String {
    let object = serde_json::from_value(policy("p", spec)).expect("a policy");
    accept(&object, &base()).expect_err("rejected").to_string()
}

#[test]
fn every_problem_is_named_by_its_field() {
    let message = rejected(&json!({
        "nodeSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]},
        "imds": {"mode": "strict", "blockedCidrs": ["nope"], "allow": [{}]},
    }));
    for field in [
        "spec.nodeSelector.matchExpressions[0].operator",
        "spec.imds.mode: unknown mode \"strict\"",
        "spec.imds.blockedCidrs[0]",
        "spec.imds.allow[0]",
    ] {
        assert!(message.contains(field), "{field} missing from {message}");
    }
    for (spec, says) in [
        (json!({"rules": {"disabled": ["nope"]}}), "\"nope\""),
        (json!({"rules": {"enabled": ["nope"]}}), "\"nope\""),
        (
            json!({"rules": {"disabled": ["reverse-shell"], "enabled": ["reverse-shell"]}}),
            "both enabled and disabled",
        ),
        (
            json!({"rules": {"exceptions": {"reverse-shell": [{"destinationCidr": ["x"]}]}}}),
            "spec.rules.exceptions.reverse-shell[0]",
        ),
        (
            json!({"rules": {"exceptions": {"reverse-shell": [{}]}}}),
            "would match everything",
        ),
    ] {
        let message = rejected(&spec);
        assert!(message.contains(says), "{spec}: {message}");
    }
}

#[test]
fn the_strictest_mode_wins_whatever_the_priority() {
    let enforce = accepted("a", &json!({"priority": -5, "imds": {"mode": "enforce"}}));
    let off = accepted("b", &json!({"priority": 100, "imds": {"mode": "off"}}));
    let none = accepted("c", &json!({"priority": 1000}));
    assert_eq!(
        merge(&base(), &[&off, &enforce]).config.imds.mode,
        ImdsMode::Enforce
    );
    assert_eq!(
        merge(&base(), &[&off, &none]).config.imds.mode,
        ImdsMode::Off
    );
    assert_eq!(
        merge(&base(), &[&none]).config.imds.mode,
        base().imds.mode,
        "no policy sets a mode: the file's stays"
    );
}

#[test]
fn rule_switches_follow_priority_then_name() {
    let off = accepted(
        "a",
        &json!({"priority": 1, "rules": {"disabled": ["reverse-shell"]}}),
    );
    let on = accepted(
        "b",
        &json!({"priority": 1, "rules": {"enabled": ["reverse-shell"]}}),
    );
    let merged = merge(&base(), &[&on, &off]);
    assert!(
        !merged
            .config
            .rules
            .disabled
            .contains(&"reverse-shell".to_owned()),
        "b comes after a"
    );
    assert_eq!(merged.generation().as_deref(), Some("a:1,b:1"));
    let later_off = accepted(
        "c",
        &json!({"priority": 2, "rules": {"disabled": ["reverse-shell"]}}),
    );
    let merged = merge(&base(), &[&on, &later_off, &off]);
    assert!(
        merged
            .config
            .rules
            .disabled
            .contains(&"reverse-shell".to_owned())
    );
}

#[test]
fn policies_that_do_not_fit_together_are_left_out() {
    // Each policy alone stays within the per-family prefix limit; together they do not.
    let limit = nodeward_common::imds::MAX_BLOCKED_PREFIXES as usize;
    let cidrs = |first: usize| -> Vec<String> {
        (first..first + limit - 1)
            .map(|i| format!("10.0.{i}.0/24"))
            .collect()
    };
    let a = accepted("a", &json!({"imds": {"blockedCidrs": cidrs(0)}}));
    let b = accepted("b", &json!({"imds": {"blockedCidrs": cidrs(100)}}));
    let merged = merge_fitting(&base(), &[&a, &b]);
    assert_eq!(merged.generation().as_deref(), Some("a:1"));
}
