//! Losing events is never silent: when the exec sensor's ring buffer fills faster than the
//! agent drains it, the kernel counts what it could not store and the agent reports the
//! count as an `events-lost` finding. And batching the ring's wake-ups loses nothing: the
//! tail of a burst arrives although nothing wakes the agent after it.

mod common;

use std::time::Duration;

use common::Stack;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use nodeward_testkit::{PodSpec, SimNode, poll_until, require_root};

/// Far more execs than the 4 MiB ring holds (about 3000 records).
const EXECS: &str = "12000";

#[test]
fn an_exec_flood_the_agent_cannot_drain_is_counted_and_reported() {
    if !require_root("an_exec_flood_the_agent_cannot_drain_is_counted_and_reported") {
        return;
    }
    let node = SimNode::builder().pod(PodSpec::new("busy")).build();
    let mut stack = Stack::start(node, |s| s);
    let busy = stack.node.pod("busy");
    // Stopped, the agent reads nothing: the ring fills and the kernel counts the rest.
    let agent = Pid::from_raw(i32::try_from(stack.agent.daemon().pid()).unwrap());
    kill(agent, Signal::SIGSTOP).expect("stop the agent");
    let storm = busy.probe(&["storm", "exec", "--count", EXECS, "--threads", "2"]);
    kill(agent, Signal::SIGCONT).expect("resume the agent");
    assert!(storm.ok, "{storm:?}");

    let lost = stack.tail.wait_for(
        Duration::from_secs(30),
        "events-lost for the exec sensor",
        |v| {
            v["finding"]["ruleId"] == "events-lost"
                && v["finding"]["summary"]
                    .as_str()
                    .is_some_and(|s| s.contains("exec"))
        },
    );
    let count = lost["finding"]["count"].as_u64().unwrap();
    assert!(count > 0, "{lost}");
    assert_eq!(lost["finding"]["category"], "health");
    assert_eq!(lost["finding"]["severity"], "medium");
    assert!(
        count < EXECS.parse::<u64>().unwrap(),
        "the ring held some: {count} lost of {EXECS}"
    );
}

/// The sensor wakes the agent at most every 20 ms per CPU; the records of a burst after
/// the last wake-up are read by the agent's periodic drain, with nothing else happening.
#[test]
fn every_exec_of_a_burst_arrives_without_a_later_wakeup() {
    if !require_root("every_exec_of_a_burst_arrives_without_a_later_wakeup") {
        return;
    }
    let node = SimNode::builder().pod(PodSpec::new("burst")).build();
    let mut stack = Stack::start(node, |s| s);
    let series = r#"nodeward_events_total{source="exec"}"#;
    let before = stack.agent.metric(series).unwrap_or(0.0);
    let burst =
        stack
            .node
            .pod("burst")
            .probe(&["storm", "exec", "--count", "400", "--threads", "2"]);
    assert!(burst.ok, "{burst:?}");
    // The probe's own exec and the 400 it made.
    let expected = before + 401.0;
    let mut seen = before;
    poll_until(Duration::from_secs(10), || {
        seen = stack.agent.metric(series).unwrap_or(0.0);
        seen >= expected
    });
    // Counters are integers in Prometheus' float text.
    assert!(
        (seen - expected).abs() < 0.5,
        "exec events counted by the agent: {seen}, expected {expected}"
    );
    let lost = stack
        .agent
        .metric(r#"nodeward_events_lost_total{source="exec"}"#)
        .unwrap_or(0.0);
    assert!(lost < 0.5, "{lost} exec events lost");
}
