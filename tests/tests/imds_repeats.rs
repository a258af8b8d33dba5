//! A pod that keeps trying is reported at once and then once per window with a count,
//! rather than once per attempt; no attempt goes uncounted.

mod common;

use std::time::Duration;

use common::{Stack, connect, wait_enforced};
use nodeward_testkit::{IMDS_V4, PodSpec, SimNode, require_root, wait_until};

const ATTEMPTS: u64 = 30;

#[test]
fn repeated_attempts_are_folded_and_counted() {
    if !require_root("repeated_attempts_are_folded_and_counted") {
        return;
    }
    let node = SimNode::builder().pod(PodSpec::new("web")).build();
    let mut stack = Stack::start(node, |s| s.imds("repeatWindowSeconds: 2"));
    let web = stack.node.pod("web");
    wait_enforced(&web);
    for _ in 0..ATTEMPTS {
        assert!(connect(&web, &IMDS_V4.to_string(), 8089).is_denied());
    }
    let on_port = |v: &serde_json::Value| v["finding"]["destination"]["port"] == 8089;
    let first = stack.wait_imds_finding(&web, "for the first attempt", |f| {
        f["destination"]["port"] == 8089
    });
    assert_eq!(
        first["count"], 1,
        "the first attempt is reported alone and at once"
    );
    stack.wait_imds_finding(&web, "for the repeats", |f| {
        f["destination"]["port"] == 8089
            && f["summary"]
                .as_str()
                .is_some_and(|s| s.starts_with("repeated"))
    });
    let total = wait_until(
        Duration::from_secs(10),
        "every attempt to be counted",
        || {
            let counted: u64 = stack
                .tail
                .seen()
                .iter()
                .filter(|v| on_port(v))
                .map(|v| v["finding"]["count"].as_u64().unwrap())
                .sum();
            stack.tail.try_find(|_| false);
            (counted >= ATTEMPTS).then_some(counted)
        },
    );
    assert_eq!(total, ATTEMPTS, "each attempt counted exactly once");
    let findings = stack.tail.seen().iter().filter(|v| on_port(v)).count();
    assert!(
        findings <= 3,
        "{ATTEMPTS} attempts became {findings} findings, not one each"
    );
}
